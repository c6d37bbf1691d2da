// The Event Grid subscription that triggers BlobEtl: blob-created events of the `incoming`
// container go to the Event Grid extension's webhook of the function app, where BlobEtl's
// eventGridTrigger receives each event (the blob's name, ETag and size, never its bytes).
//
// Deployed AFTER the code (the azd postdeploy hook, infra/hooks/postdeploy.sh, runs it):
// the webhook's key (the host's `eventgrid_extension` system key) exists only once the host
// has loaded an Event Grid trigger, and Event Grid validates the endpoint (the extension
// answers the handshake) when the subscription is created. The webhook form is Microsoft's:
// https://learn.microsoft.com/azure/azure-functions/event-grid-how-tos#webhook-endpoint-url
// It answers 202 only after the function has run (500 when it failed, and Event Grid delivers
// again), and Event Grid waits 30 seconds for that answer; BlobEtl therefore processes only
// small blobs itself and hands large ones to its work queue. By hand, after publishing the code:
//   az deployment group create --resource-group <rg> --template-file infra/blob-events.bicep \
//     --parameters functionAppName=<app> systemTopicName=<topic> storageAccountName=<account>
//
// The key goes from the host's keys straight into the subscription's endpoint inside this
// deployment; it is never printed, stored in an app setting, or passed on a command line.

@description('The function app (AZURE_FUNCTION_APP_NAME).')
param functionAppName string

@description('The storage account\'s Event Grid system topic (AZURE_BLOB_EVENTS_TOPIC_NAME).')
param systemTopicName string

@description('The storage account that holds the containers (AZURE_STORAGE_ACCOUNT_NAME).')
param storageAccountName string

@description('The function with the Event Grid trigger (BlobEtl).')
param functionName string = 'BlobEtl'

@description('The container whose new blobs trigger the function (ETL_INPUT_CONTAINER).')
param inputContainerName string = 'incoming'

@description('The container that receives the events Event Grid could not deliver.')
param deadLetterContainerName string = 'eventgrid-deadletter'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

// The host's system key of the Event Grid extension: it goes from the host's keys into the
// subscription's endpoint, within this deployment (never a parameter or an output).
var eventGridExtensionKey = listKeys('${functionApp.id}/host/default', functionApp.apiVersion).systemKeys.eventgrid_extension

resource blobCreatedToFunction 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: '${toLower(functionName)}-blob-created'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/eventgrid?functionName=${functionName}&code=${eventGridExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${inputContainerName}/'
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
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output subscriptionName string = blobCreatedToFunction.name
