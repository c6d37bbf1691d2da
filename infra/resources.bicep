// Every resource of one environment, in one resource group (main.bicep creates the group).
//
// The function app authenticates to everything with one user-assigned managed identity:
// no connection string, account key or SAS is created, read or stored anywhere. Each role
// assignment is scoped to the one resource it serves (see infra/README.md for the list).

@description('Azure region of every resource in this group.')
param location string

@description('Tags for every resource.')
param tags object

@description('Short unique suffix of every resource name (main.bicep derives it).')
param resourceToken string

@secure()
@minLength(12)
@description('The API key HttpGreeting accepts; stored as the Key Vault secret API_KEY_SECRET_NAME.')
param apiKey string

@description('When the API key secret is written; its expiry is a year later.')
param deploymentTime string = utcNow()

@description('Object id of whoever deploys (person or pipeline): gets Key Vault Secrets Officer on the vault, to rotate the API key. Empty: no such role.')
param deployerPrincipalId string = ''

@description('Cosmos DB capacity mode: serverless (pay per request) when true, else provisioned autoscale throughput.')
param cosmosServerless bool = true

@description('Autoscale maximum RU/s of the database when cosmosServerless is false.')
param cosmosAutoscaleMaxThroughput int = 1000

@description('Most instances the Flex Consumption app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of each Flex Consumption instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('HTTP requests one instance serves at once (Flex Consumption; the Python default is 1). HttpGreeting is async and I/O-bound.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Share of traces kept by the host and the worker (1.0: every request and span; lower it to cut ingestion cost).')
param tracesSampleRatio string = '1.0'

@description('Tenant of the API\'s app registration (infra/hooks/preprovision.sh sets it): the tenant whose tokens the app accepts.')
param authTenantId string

@description('Client id of the API\'s app registration (infra/hooks/preprovision.sh sets it): its tokens\' audience.')
param authClientId string

@description('Put App Service Authentication (Easy Auth) in front: it refuses callers without a valid token before the app runs, and the app reads its principal (AUTH_MODE=easyauth). Off: the app validates tokens itself (AUTH_MODE=entra).')
param enableEasyAuth bool = false

// ---------------------------------------------------------------------------
// Names the app reads as settings, and names of the resources.

var names = {
  identity: 'id-${resourceToken}'
  storage: 'st${resourceToken}'
  plan: 'plan-${resourceToken}'
  functionApp: 'func-${resourceToken}'
  serviceBus: 'sb-${resourceToken}'
  cosmos: 'cosmos-${resourceToken}'
  keyVault: 'kv-${resourceToken}'
  logAnalytics: 'log-${resourceToken}'
  appInsights: 'appi-${resourceToken}'
  blobEventsTopic: 'evgt-${resourceToken}'
  eventsTopic: 'evgt-events-${resourceToken}'
}

var inputQueueName = 'orders-in'
var outputQueueName = 'orders-out'
var invalidQueueName = 'orders-invalid'
var cosmosDatabaseName = 'serverless'
var cosmosContainerName = 'records'
var orderEventsContainerName = 'order-events'
var orderIdempotencyContainerName = 'order-idempotency'
var etlInputContainerName = 'incoming'
var etlSummaryContainerName = 'summaries'
// BlobEtlWorker's Storage queue (splits and segments of large blobs) and the queue extension's
// poison queue for it (<queue>-poison, created here so the host never has to).
var etlWorkQueueName = 'etl-work'
var etlPoisonQueueName = '${etlWorkQueueName}-poison'
var apiKeySecretName = 'greeting-api-key'
// Flex Consumption deploys the app package to this container, with the identity.
var deploymentContainerName = 'app-package'
// Events Event Grid could not deliver (blob events, infra/blob-events.bicep, and PublishEvent's
// events to QueueProcessor's queue) land here.
var eventDeadLetterContainerName = 'eventgrid-deadletter'

// Built-in role definitions (ids are the same in every tenant).
var roleIds = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
}
// Cosmos DB's data-plane role "Cosmos DB Built-in Data Contributor".
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'

// ---------------------------------------------------------------------------
// Identity

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------
// Monitoring: a Log Analytics workspace, and Application Insights on it that accepts
// telemetry authenticated with Microsoft Entra ID only (the identity, not a key).

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: names.logAnalytics
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: names.appInsights
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------
// Storage: the host's own storage (AzureWebJobsStorage), the deployment package, and
// BlobEtl's containers and BlobEtlWorker's queues (EtlStorage).

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: names.storage
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    // checkov:skip=CKV_AZURE_206: locally redundant by default to keep a sample environment cheap; choose Standard_ZRS or GZRS for production data.
    // checkov:skip=CKV_AZURE_59: public endpoint on purpose (no virtual network in this sample); every request must carry an Entra ID token since shared keys are off.
    // checkov:skip=CKV_AZURE_35: default action Allow for the same reason; Flex Consumption instances have no fixed outbound addresses to allow-list without a virtual network.
    // checkov:skip=CKV_AZURE_43: checkov cannot evaluate the name; it is 'st' plus uniqueString(), 15 lowercase letters and digits.
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource etlInputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: etlInputContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource etlSummaryContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: etlSummaryContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource eventDeadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: eventDeadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource etlWorkQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: etlWorkQueueName
}

resource etlPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: etlPoisonQueueName
}

// A fanned-out blob's run keeps its claim, manifest, segment results and its own summary under
// summaries/_runs/<version>/ (the readable summary is summaries/<blob>.summary.json): they are
// deleted a week after their last write.
resource runRetention 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'etl-runs-after-7-days'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${etlSummaryContainerName}/_runs/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 7
                }
              }
            }
          }
        }
      ]
    }
  }
}

// Queue writes go to Log Analytics: the poison-queue alert (alerts.bicep) looks for a
// message put on BlobEtlWorker's poison queue.
resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'queue-writes-to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'StorageWrite'
        enabled: true
      }
    ]
  }
}

// Blob events of the account, for BlobEtl's Event Grid trigger. The
// subscription to the function is made after the code is deployed (blob-events.bicep).
resource blobEventsTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: names.blobEventsTopic
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// ---------------------------------------------------------------------------
// Service Bus: the input queue, the output queue (duplicate detection: a redelivered
// input produces the same output message id, which the queue drops), and the queue of
// messages that can never be processed.

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: names.serviceBus
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource inputQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: serviceBus
  name: inputQueueName
  properties: {
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    // Event Grid sets each message's id from the event's id: a republished event (a caller's
    // retry, an Event Grid redelivery) is dropped here. The window covers Event Grid's whole
    // retry period (eventTimeToLiveInMinutes below). It cannot be turned on for an existing queue.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
  }
}

resource outputQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: serviceBus
  name: outputQueueName
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT1H'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
  }
}

resource invalidQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: serviceBus
  name: invalidQueueName
  properties: {
    // A redelivered invalid message is set aside again with the same message id: dropped here.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT1H'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
  }
}

// ---------------------------------------------------------------------------
// Event Grid: PublishEvent's custom topic (CloudEvents 1.0, Entra ID only) and its
// subscription, which delivers every event to QueueProcessor's input queue as the topic's
// own identity. The message id is the event's id (the input queue drops duplicates);
// Diagnostic-Id carries the event's traceparent, so the host continues the request's trace.

resource eventsTopic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: names.eventsTopic
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    // checkov:skip=CKV_AZURE_193: PublishEvent publishes over the public endpoint with Entra ID (local auth is off).
    publicNetworkAccess: 'Enabled'
  }
}

resource eventsToInputQueue 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = {
  parent: eventsTopic
  name: 'queueprocessor-events'
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    deliveryWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      destination: {
        endpointType: 'ServiceBusQueue'
        properties: {
          resourceId: inputQueue.id
          deliveryAttributeMappings: [
            {
              name: 'MessageId'
              type: 'Dynamic'
              properties: {
                sourceField: 'id'
              }
            }
            {
              name: 'Diagnostic-Id'
              type: 'Dynamic'
              properties: {
                sourceField: 'traceparent'
              }
            }
          ]
        }
      }
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: eventDeadLetterContainer.name
        }
      }
    }
  }
  dependsOn: [
    eventsTopicQueueSender
    eventsTopicDeadLetterWriter
  ]
}

// ---------------------------------------------------------------------------
// Cosmos DB: serverless by default, Entra ID only (no account keys), one database and
// one container partitioned by /id.

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: names.cosmos
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    // checkov:skip=CKV_AZURE_99: public endpoint on purpose (no virtual network); keys are disabled, so every request needs an Entra ID token with a data-plane role.
    // checkov:skip=CKV_AZURE_101: same reason as CKV_AZURE_99.
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    capabilities: cosmosServerless ? [
      {
        name: 'EnableServerless'
      }
    ] : []
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
  }
}

resource cosmosDatabase 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: cosmos
  name: cosmosDatabaseName
  properties: {
    resource: {
      id: cosmosDatabaseName
    }
    options: cosmosServerless ? {} : {
      autoscaleSettings: {
        maxThroughput: cosmosAutoscaleMaxThroughput
      }
    }
  }
}

resource cosmosContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: cosmosDatabase
  name: cosmosContainerName
  properties: {
    resource: {
      id: cosmosContainerName
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
      }
    }
  }
}

// The orders' event store (docs/orders.md): one stream per order in its own logical partition,
// so an append's transactional batch stays within one partition key, as Cosmos DB requires. Only
// the properties the store queries on are indexed: events and snapshots carry their data unindexed,
// which keeps each write's request charge low.
resource orderEventsContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: cosmosDatabase
  name: orderEventsContainerName
  properties: {
    resource: {
      id: orderEventsContainerName
      partitionKey: {
        paths: [
          '/streamId'
        ]
        kind: 'Hash'
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          { path: '/streamId/?' }
          { path: '/kind/?' }
          { path: '/version/?' }
          { path: '/recordedAt/?' }
        ]
        excludedPaths: [
          { path: '/*' }
        ]
        compositeIndexes: [
          [
            { path: '/streamId', order: 'ascending' }
            { path: '/version', order: 'ascending' }
          ]
        ]
      }
    }
  }
}

// Idempotency-Key records: read by id only (no index), removed by Cosmos DB's time to live (each
// record sets its own ttl from ORDERS_IDEMPOTENCY_HOURS; -1 turns TTL on without a default).
resource orderIdempotencyContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: cosmosDatabase
  name: orderIdempotencyContainerName
  properties: {
    resource: {
      id: orderIdempotencyContainerName
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
      }
      defaultTtl: -1
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: []
        excludedPaths: [
          { path: '/*' }
        ]
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Key Vault in RBAC mode, holding the API key. The value comes from the apiKey
// parameter, which is generated (never a literal): see main.bicep.

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: names.keyVault
  location: location
  tags: tags
  properties: {
    // checkov:skip=CKV_AZURE_109: public endpoint on purpose (no virtual network); RBAC mode, and only the app's identity may read secrets.
    // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109.
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource apiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: apiKeySecretName
  properties: {
    value: apiKey
    contentType: 'text/plain'
    attributes: {
      enabled: true
      // Informational: Key Vault still returns a secret past its expiry, so nothing breaks
      // on the day; it flags when the key is due for rotation. Each provision renews it.
      exp: dateTimeToEpoch(dateTimeAdd(deploymentTime, 'P1Y'))
    }
  }
}

// ---------------------------------------------------------------------------
// The function app: Linux, Flex Consumption, Python 3.13 (see infra/README.md for why).

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: names.plan
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225: zone redundancy of a Flex Consumption plan depends on the region; turn it on (zoneRedundant: true) where the region offers it.
    reserved: true
  }
}

// Identity-based settings shared by every connection.
var identityCredential = 'managedidentity'

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: names.functionApp
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_222: public endpoint on purpose: HttpGreeting is a public API, and Event Grid delivers blob events to the blobs webhook.
    // checkov:skip=CKV_AZURE_212: Flex Consumption allocates instances per function on demand (always-ready instances are an opt-in cost); there is no instance count to set.
    // checkov:skip=CKV_AZURE_213: App Service health check evicts unhealthy instances of plans with fixed instances; Flex Consumption manages its instances and the app has no health endpoint.
    // checkov:skip=CKV_AZURE_78: siteConfig.ftpsState is on Flex Consumption's list of deprecated site properties
    // ("FTPS not supported"; ARM rejects Flex sites that set it in some regions): FTP is off by the plan
    // itself, and basic publishing credentials are disabled below.
    // https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
    // checkov:skip=CKV_AZURE_17: callers authenticate with Microsoft Entra ID bearer tokens (identity/), the function key and the x-api-key header, not client certificates.
    serverFarmId: plan.id
    // A Key Vault reference in an app setting (the API key's documented option, docs/identity.md)
    // is resolved with the app's user-assigned identity; the platform's default is a system-assigned one.
    keyVaultReferenceIdentity: identity.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        // The host's own storage (keys, timer and blob-trigger state, deployment).
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: identityCredential
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identity.properties.clientId
        }
        // QueueProcessor's trigger and the app's senders.
        {
          name: 'ServiceBusConnection__fullyQualifiedNamespace'
          value: replace(replace(serviceBus.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
        }
        {
          name: 'ServiceBusConnection__credential'
          value: identityCredential
        }
        {
          name: 'ServiceBusConnection__clientId'
          value: identity.properties.clientId
        }
        {
          name: 'INPUT_QUEUE_NAME'
          value: inputQueue.name
        }
        {
          name: 'OUTPUT_QUEUE_NAME'
          value: outputQueue.name
        }
        {
          name: 'INVALID_QUEUE_NAME'
          value: invalidQueue.name
        }
        // PublishEvent: the custom topic, and the largest event the chain carries (a Standard
        // Service Bus message is at most 256 KB, properties included).
        {
          name: 'EVENT_GRID_TOPIC_ENDPOINT'
          value: eventsTopic.properties.endpoint
        }
        {
          name: 'EVENT_MAX_BYTES'
          value: '250000'
        }
        // BlobEtl's and CleanupTimer's items.
        {
          name: 'CosmosConnection__accountEndpoint'
          value: cosmos.properties.documentEndpoint
        }
        {
          name: 'CosmosConnection__credential'
          value: identityCredential
        }
        {
          name: 'CosmosConnection__clientId'
          value: identity.properties.clientId
        }
        {
          name: 'COSMOS_DATABASE'
          value: cosmosDatabase.name
        }
        {
          name: 'COSMOS_CONTAINER'
          value: cosmosContainer.name
        }
        // The orders API (docs/orders.md): its two containers, in the same database.
        {
          name: 'ORDERS_EVENTS_CONTAINER'
          value: orderEventsContainer.name
        }
        {
          name: 'ORDERS_IDEMPOTENCY_CONTAINER'
          value: orderIdempotencyContainer.name
        }
        {
          name: 'ORDERS_SNAPSHOT_EVERY'
          value: '50'
        }
        {
          name: 'ORDERS_IDEMPOTENCY_HOURS'
          value: '24'
        }
        // BlobEtl's blobs and summaries, BlobEtlWorker's queue trigger (EtlStorage__queueServiceUri).
        {
          name: 'EtlStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'EtlStorage__queueServiceUri'
          value: storage.properties.primaryEndpoints.queue
        }
        {
          name: 'EtlStorage__credential'
          value: identityCredential
        }
        {
          name: 'EtlStorage__clientId'
          value: identity.properties.clientId
        }
        {
          name: 'ETL_INPUT_CONTAINER'
          value: etlInputContainer.name
        }
        {
          name: 'ETL_SUMMARY_CONTAINER'
          value: etlSummaryContainer.name
        }
        {
          name: 'ETL_WORK_QUEUE'
          value: etlWorkQueue.name
        }
        // HttpGreeting's API key, read from the vault with the identity.
        {
          name: 'KEY_VAULT_URL'
          value: keyVault.properties.vaultUri
        }
        {
          name: 'API_KEY_SECRET_NAME'
          value: apiKeySecret.name
        }
        // Callers: Microsoft Entra ID tokens for the API's app registration (identity/, docs/identity.md).
        {
          name: 'AUTH_MODE'
          value: enableEasyAuth ? 'easyauth' : 'entra'
        }
        {
          name: 'AUTH_TENANT_ID'
          value: authTenantId
        }
        {
          name: 'AUTH_AUDIENCE'
          value: 'api://${authClientId},${authClientId}'
        }
        // The identity the app's own clients use (common/credential.py).
        {
          name: 'AZURE_CLIENT_ID'
          value: identity.properties.clientId
        }
        // CleanupTimer.
        {
          name: 'CLEANUP_SCHEDULE'
          value: '0 0 2 * * *'
        }
        {
          name: 'RETENTION_DAYS'
          value: '30'
        }
        // Telemetry: the connection string identifies the resource (it holds no key; local
        // authentication is off), and the authentication string makes the host and the
        // exporters sign in with the identity.
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
        }
        {
          name: 'PYTHON_ENABLE_OPENTELEMETRY'
          value: 'true'
        }
        // Sampling for host and worker alike (host.json samplingSettings do not apply in OpenTelemetry
        // mode): a fixed percentage decides by trace id, so an invocation is kept or dropped whole.
        // 1.0 keeps every trace. See infra/README.md.
        {
          name: 'OTEL_TRACES_SAMPLER'
          value: 'microsoft.fixed_percentage'
        }
        {
          name: 'OTEL_TRACES_SAMPLER_ARG'
          value: string(tracesSampleRatio)
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // Flex reads HTTP concurrency here, per instance (host.json's maxConcurrentRequests and
        // maxOutstandingRequests are not read on Flex); for Python the default is 1.
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
  dependsOn: [
    deploymentContainer
    storageBlobDataOwner
  ]
}

// App Service Authentication in front of the app, when enableEasyAuth: a request without a valid
// token for the API's registration gets a 401 from the platform, and the app reads the caller
// from X-MS-CLIENT-PRINCIPAL, which the platform sets and refuses from outside.
// https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad
resource easyAuth 'Microsoft.Web/sites/config@2024-04-01' = if (enableEasyAuth) {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    // Checkov reads every Microsoft.Web/sites/config as the site's 'web' settings; this one is
    // 'authsettingsV2', which holds none of what these checks look for:
    // checkov:skip=CKV_AZURE_66: failed request tracing is a 'web' config setting, not an authsettingsV2 one.
    // checkov:skip=CKV_AZURE_63: HTTP logging is a 'web' config setting, not an authsettingsV2 one.
    // checkov:skip=CKV_AZURE_222: public network access is a site property (set on the function app), not an authsettingsV2 one.
    // checkov:skip=CKV_AZURE_80: the .NET Framework version is a 'web' config setting; the app runs Python.
    // checkov:skip=CKV_AZURE_13: this resource is the App Service Authentication (authsettingsV2) the check asks for; it reads the legacy siteAuthEnabled.
    // checkov:skip=CKV_AZURE_88: Azure Files mounts are a site setting; Flex Consumption runs from a blob deployment package.
    // checkov:skip=CKV_AZURE_65: detailed error messages are a 'web' config setting, not an authsettingsV2 one.
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: 'https://login.microsoftonline.com/${authTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// Publishing with a user name and password (FTP, basic auth to the deployment endpoint) is
// off: Core Tools, azd and VS Code deploy with Entra ID tokens.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// ---------------------------------------------------------------------------
// Role assignments of the app's identity, each scoped to the one resource it serves.

// The host (keys, timer locks, blob-trigger receipts, deployment package) and BlobEtl
// (read incoming, write summaries) need blob data ownership on the account.
resource storageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// BlobEtlWorker's work queue: BlobEtl sends split messages and the split sends segment
// messages; the queue trigger reads, deletes and, after a failed delivery, updates them (the
// extension releases a message with Update Message, which needs messages/write: Microsoft's
// table lists Reader + Message Processor for the trigger, which lack it, MicrosoftDocs/azure-docs
// issue 120932). Data Contributor on this one queue covers all of it.
// https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#grant-permission-to-the-identity
resource etlWorkQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(etlWorkQueue.id, identity.id, roleIds.storageQueueDataContributor)
  scope: etlWorkQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The queue extension moves a message that failed maxDequeueCount times to <queue>-poison with
// Put Message (it creates the queue only after a 404, and it exists: it is deployed above), so
// Message Sender on that queue is enough (Azure/azure-sdk-for-net,
// Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/StorageQueueExtensions.cs,
// AddMessageAndCreateIfNotExistsAsync).
resource etlPoisonQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(etlPoisonQueue.id, identity.id, roleIds.storageQueueDataMessageSender)
  scope: etlPoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataMessageSender)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource inputQueueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(inputQueue.id, identity.id, roleIds.serviceBusDataReceiver)
  scope: inputQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataReceiver)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource outputQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(outputQueue.id, identity.id, roleIds.serviceBusDataSender)
  scope: outputQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataSender)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource invalidQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(invalidQueue.id, identity.id, roleIds.serviceBusDataSender)
  scope: invalidQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataSender)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource keyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, roleIds.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Telemetry to an Application Insights resource that accepts only Entra ID.
resource monitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Cosmos DB data-plane role, scoped to the app's database: its three containers (records, the
// orders' events and idempotency records) and nothing else of the account. (A container scope would
// be narrower, but the SDKs read database metadata, which a container-scoped assignment refuses.)
resource cosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: cosmos
  name: guid(cosmosDatabase.id, identity.id, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: identity.properties.principalId
    scope: '${cosmos.id}/dbs/${cosmosDatabase.name}'
  }
}

// Event Grid writes undeliverable blob events to the dead-letter container, as itself.
resource eventDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventDeadLetterContainer.id, blobEventsTopic.id, roleIds.storageBlobDataContributor)
  scope: eventDeadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
    principalId: blobEventsTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// PublishEvent publishes to its topic (and to no other).
resource eventsTopicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsTopic.id, identity.id, roleIds.eventGridDataSender)
  scope: eventsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.eventGridDataSender)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The topic delivers to QueueProcessor's input queue (and to no other), as itself.
resource eventsTopicQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(inputQueue.id, eventsTopic.id, roleIds.serviceBusDataSender)
  scope: inputQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataSender)
    principalId: eventsTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The topic writes the events it could not deliver to the dead-letter container.
resource eventsTopicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventDeadLetterContainer.id, eventsTopic.id, roleIds.storageBlobDataContributor)
  scope: eventDeadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
    principalId: eventsTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Whoever deploys may read and rotate the API key (azd reads it back on re-provision, so
// the key stays the same; see main.parameters.json).
resource deployerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(keyVault.id, deployerPrincipalId, roleIds.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
  }
}

// ---------------------------------------------------------------------------
// Outputs (azd writes them to .azure/<env>/.env; the README's commands use them).

output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output storageAccountName string = storage.name
output storageAccountId string = storage.id
output blobEventsTopicName string = blobEventsTopic.name
output eventsTopicName string = eventsTopic.name
output eventsTopicEndpoint string = eventsTopic.properties.endpoint
output etlInputContainerName string = etlInputContainer.name
output etlPoisonQueueName string = etlPoisonQueue.name
output eventDeadLetterContainerName string = eventDeadLetterContainer.name
output serviceBusNamespaceId string = serviceBus.id
output serviceBusNamespaceName string = serviceBus.name
output queueNames array = [
  inputQueue.name
  outputQueue.name
  invalidQueue.name
]
output cosmosAccountName string = cosmos.name
output cosmosEndpoint string = cosmos.properties.documentEndpoint
output keyVaultName string = keyVault.name
output keyVaultUri string = keyVault.properties.vaultUri
output apiKeySecretName string = apiKeySecret.name
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
output logAnalyticsWorkspaceId string = logAnalytics.id
output logAnalyticsWorkspaceName string = logAnalytics.name
