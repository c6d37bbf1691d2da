// Alerts: failed function invocations, messages in a Service Bus dead-letter queue, work of a
// large blob moved to BlobEtlWorker's poison queue, and events Event Grid could not deliver.

@description('Tags for every resource.')
param tags object

@description('Short unique suffix of every resource name.')
param resourceToken string

@description('Application Insights resource that receives the functions\' requests.')
param appInsightsId string

@description('Service Bus namespace of the queues.')
param serviceBusNamespaceId string

@description('Queues whose dead-letter queues are watched.')
param queueNames array

@description('Log Analytics workspace that receives the storage account\'s queue logs.')
param logAnalyticsWorkspaceId string

@description('Storage account of BlobEtlWorker\'s work queue and its poison queue.')
param storageAccountName string

@description('BlobEtlWorker\'s poison queue (the work queue\'s name plus -poison).')
param etlPoisonQueueName string

@description('Event Grid system topic of the storage account\'s blob events.')
param blobEventsTopicName string

@description('Event Grid custom topic PublishEvent publishes to.')
param eventsTopicName string

@description('Email address that receives the alerts. Empty: alerts fire in the portal only.')
param alertEmail string = ''

var actionGroups = empty(alertEmail) ? [] : [
  actionGroup.id
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'fnalerts'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource blobEventsTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: blobEventsTopicName
}

resource eventsTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: eventsTopicName
}

// Any failed invocation (a request with success == false). Requests are not sampled while
// OTEL_TRACES_SAMPLER_ARG is 1.0 (the default of tracesSampleRatio); the metric counts itemCount.
resource functionFailures 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-function-failures-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'A function invocation failed (Application Insights requests/failed > 0 in 5 minutes).'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'failedRequests'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Count'
        }
      ]
    }
    actions: [for id in actionGroups: {
      actionGroupId: id
    }]
  }
}

// A message in the dead-letter queue of any of the app's queues: QueueProcessor gave up on
// it after MaxDeliveryCount attempts, or it expired.
resource deadLetteredMessages 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-servicebus-dead-letters-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'A Service Bus queue of the app has messages in its dead-letter queue.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'deadLetteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: queueNames
            }
          ]
        }
      ]
    }
    actions: [for id in actionGroups: {
      actionGroupId: id
    }]
  }
}

// A split or a segment of a large blob moved to the poison queue: it failed on every one of
// maxDequeueCount deliveries (host.json). The blob's summary says failed and names the segment;
// this tells someone. The storage account's queue writes are in the workspace (resources.bicep).
resource poisonSegments 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-etl-poison-queue-${resourceToken}'
  location: resourceGroup().location
  tags: tags
  properties: {
    displayName: 'Large-blob work moved to ${etlPoisonQueueName}'
    description: 'BlobEtlWorker gave up on a split or a segment of a large blob: a message was put on ${etlPoisonQueueName}. The blob\'s summary (summaries/<blob>.summary.json) names the segment, its record range and the reason.'
    severity: 2
    enabled: true
    scopes: [
      logAnalyticsWorkspaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: 'StorageQueueLogs | where AccountName == "${storageAccountName}" and OperationName == "PutMessage" | where Uri contains "/${etlPoisonQueueName}"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Blob events that Event Grid gave up delivering to the function (they are in the
// dead-letter container) or could not even dead-letter.
resource undeliveredBlobEvents 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-blob-events-undelivered-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dead-lettered a blob event for BlobEtl: the blob was not processed.'
    severity: 2
    enabled: true
    scopes: [
      blobEventsTopic.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'deadLetteredEvents'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: [for id in actionGroups: {
      actionGroupId: id
    }]
  }
}

resource droppedBlobEvents 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-blob-events-dropped-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dropped a blob event for BlobEtl (not delivered and not dead-lettered).'
    severity: 1
    enabled: true
    scopes: [
      blobEventsTopic.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'droppedEvents'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DroppedEventCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: [for id in actionGroups: {
      actionGroupId: id
    }]
  }
}

// Events PublishEvent accepted (202) that Event Grid could not deliver to QueueProcessor's queue.
resource deadLetteredEvents 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-events-undelivered-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dead-lettered an event PublishEvent accepted: it did not reach QueueProcessor\'s queue (see the dead-letter container).'
    severity: 2
    enabled: true
    scopes: [
      eventsTopic.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'deadLetteredEvents'
          metricNamespace: 'Microsoft.EventGrid/topics'
          metricName: 'DeadLetteredCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: [for id in actionGroups: {
      actionGroupId: id
    }]
  }
}

// Events PublishEvent accepted (202) that Event Grid could not deliver to QueueProcessor's queue.
resource droppedEvents 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-events-dropped-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dropped an event PublishEvent accepted (not delivered and not dead-lettered).'
    severity: 1
    enabled: true
    scopes: [
      eventsTopic.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'droppedEvents'
          metricNamespace: 'Microsoft.EventGrid/topics'
          metricName: 'DroppedEventCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: [for id in actionGroups: {
      actionGroupId: id
    }]
  }
}
