// The Event Grid subscription that triggers BlobEtl: blob-created events of the `incoming`
// container go to the blob extension's webhook of the function app.
//
// Deployed AFTER the code (the azd postdeploy hook, infra/hooks/postdeploy.sh, runs it):
// the webhook's key (the host's `blobs_extension` system key) exists only once the host
// has loaded a blob trigger with "source": "EventGrid", and Event Grid validates the
// endpoint when the subscription is created. By hand, after publishing the code:
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

@description('The function with the Event Grid-source blob trigger.')
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

// The host's system key of the blob extension: it goes from the host's keys into the
// subscription's endpoint, within this deployment (never a parameter or an output).
var blobExtensionKey = listKeys('${functionApp.id}/host/default', functionApp.apiVersion).systemKeys.blobs_extension

resource blobCreatedToFunction 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: '${toLower(functionName)}-blob-created'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobExtensionKey}'
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
