// The Function App on Flex Consumption (FC1), Python 3.13 (the newest GA there; README "Python version"),
// with the user-assigned identity for everything:
// host storage (identity-based AzureWebJobsStorage), the app package container, Key Vault references, telemetry.
param name string
param location string
param tags object
param planName string
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsConnectionString string
param maximumInstanceCount int
param instanceMemoryMB int
@description('MLREACTOR_* settings (see shared/settings.py), merged with the host settings below.')
param appSettings object

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

// Host settings: identity-based AzureWebJobsStorage, the identity for DefaultAzureCredential, Entra ID telemetry.
var settings = union(appSettings, {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
})

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy is offered in some regions only; enable it (zoneRedundant) where the chosen region has it
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid pushes to the function's public endpoint (it cannot deliver to a private endpoint); the routes are the Event Grid webhook (extension system key) and function-key HTTP endpoints
  // checkov:skip=CKV_AZURE_213: App Service health check probes a fixed set of instances; Flex Consumption scales per event (the app's health endpoint serves availability tests)
  // checkov:skip=CKV_AZURE_17: client certificates would reject Event Grid's deliveries; Event Grid does not present one
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales per event; there is no instance count to set a floor on
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(settings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
}

output id string = functionApp.id
output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
