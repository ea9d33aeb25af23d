// mlreactor in Azure: a Flex Consumption Function App that reacts to Azure ML workspace events.
//
// Deploy with `azd up` (azure.yaml at the repo root; parameters from infra/main.parameters.json and the azd
// environment) or `az deployment group create -g RG -f infra/main.bicep -p @infra/example.parameters.json`.
// Event subscriptions need the functions to exist first: see `deployEventSubscriptions` and README "Deploy".
//
// Resources are declared natively (not Azure Verified Modules from the public registry) so that `checkov` sees every
// resource's properties and the template builds without registry access.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd: AZURE_ENV_NAME); seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region of the app, its storage and monitoring. Flex Consumption must be available there.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

@description('Resource ids of the Azure ML workspaces mlreactor may act on, comma-separated without spaces. The app gets the same list as MLREACTOR_SUBSCRIBED_WORKSPACES, which the shipped reactions.yaml allows. Each gets an Event Grid system topic, one subscription per function, and an AzureML Data Scientist role assignment for the app.')
param azureMlWorkspaceIds string

@description('Create the Event Grid subscriptions. They point at functions by resource id, and Event Grid checks the function exists when the subscription is created, so the first provision (before azd deploys the code) must run with false; the postdeploy hook provisions again with true.')
param deployEventSubscriptions bool = false

@minValue(1)
@maxValue(30)
@description('Event Grid delivery attempts per event before it is dead-lettered.')
param eventMaxDeliveryAttempts int = 30

@minValue(1)
@maxValue(1440)
@description('Minutes Event Grid keeps retrying an event before it is dead-lettered.')
param eventTimeToLiveMinutes int = 1440

@description('Plan and record actions without calling Azure ML, Azure DevOps or the notification channels (MLREACTOR_DRY_RUN). Start with true, read the audit trail, then switch to false.')
param dryRun bool = true

@description('Azure DevOps organization URL for queue_release, e.g. https://dev.azure.com/contoso (MLREACTOR_DEVOPS_ORGANIZATION_URL). Empty: not set.')
param devopsOrganizationUrl string = ''

@description('Key Vault secret holding the Azure DevOps PAT (MLREACTOR_DEVOPS_PAT).')
param devopsPatSecretName string = 'devops-pat'

@description('Key Vault secret holding the shared secret of the Azure DevOps service hooks (MLREACTOR_RELEASE_HOOK_SECRET).')
param releaseHookSecretName string = 'release-hook-secret'

@description('Key Vault secret holding the GitHub webhook secret (MLREACTOR_GITHUB_WEBHOOK_SECRET).')
param githubWebhookSecretName string = 'github-webhook-secret'

@description('Key Vault secret holding the ops-teams channel webhook URL (MLREACTOR_TEAMS_OPS_URL, named by reactions.yaml).')
param teamsOpsUrlSecretName string = 'teams-ops-url'

@description('Key Vault secret holding the ops-slack channel webhook URL (MLREACTOR_SLACK_OPS_URL, named by reactions.yaml).')
param slackOpsUrlSecretName string = 'slack-ops-url'

@allowed([
  'Standard_GZRS'
  'Standard_RAGZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
@description('Replication of the storage account holding the ledger, quarantine and dead-lettered events.')
param storageSku string = 'Standard_GZRS'

@minValue(1)
@maxValue(1000)
@description('Flex Consumption scale-out limit (the current docs allow 1 to 1000).')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
@description('Flex Consumption instance memory (MB).')
param instanceMemoryMB int = 2048

@minValue(30)
@maxValue(730)
@description('Log Analytics retention (days).')
param logRetentionDays int = 90

@description('Subscribe the legacy v1 DatasetDriftDetected event (on_dataset_drift). Off: it is gone from the current Azure ML event docs, and if Event Grid stopped accepting it the whole deployment would fail. v2 model monitoring arrives as RunStatusChanged (on_model_monitor_signal) either way.')
param subscribeDatasetDriftDetected bool = false

@description('E-mail address the alerts notify (action group). Empty: the alerts fire in Azure Monitor but e-mail no one.')
param alertEmail string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'mlreactor'
}
var functionAppName = '${abbrs.webSitesFunctions}mlreactor-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 16)}'
var quarantineContainerName = 'mlreactor-quarantine'
var deadLetterContainerName = 'eventgrid-deadletter'
var workspaceIds = empty(azureMlWorkspaceIds) ? [] : split(azureMlWorkspaceIds, ',')
var keyVaultReference = '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName='

// Identities: one for the app (storage, Key Vault, Azure ML, the custom topic), one for Event Grid's dead-lettering
// (write access to the dead-letter container only).
resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${abbrs.managedIdentityUserAssignedIdentities}mlreactor-${resourceToken}'
  location: location
  tags: tags
}

resource eventGridIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${abbrs.managedIdentityUserAssignedIdentities}mlreactor-eventgrid-${resourceToken}'
  location: location
  tags: tags
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    name: '${abbrs.storageStorageAccounts}mlr${resourceToken}'
    location: location
    tags: tags
    sku: storageSku
    containerNames: [
      deploymentContainerName
      quarantineContainerName
      deadLetterContainerName
    ]
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}mlreactor-${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}mlreactor-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: '${abbrs.keyVaultVaults}mlr-${take(resourceToken, 17)}'
    location: location
    tags: tags
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module topic 'app/topic.bicep' = {
  name: 'topic'
  params: {
    name: '${abbrs.eventGridDomainsTopics}mlreactor-${resourceToken}'
    location: location
    tags: tags
  }
}

// App settings: names match shared/settings.py (every knob is an MLREACTOR_* setting, read only there).
var appSettings = {
  MLREACTOR_DRY_RUN: string(dryRun)
  MLREACTOR_AZUREML_LIVE: string(!dryRun)
  MLREACTOR_LEDGER: 'tables'
  MLREACTOR_STORAGE_ACCOUNT_URL: storage.outputs.tableEndpoint
  MLREACTOR_QUARANTINE_CONTAINER: quarantineContainerName
  MLREACTOR_MANAGED_IDENTITY_CLIENT_ID: appIdentity.properties.clientId
  MLREACTOR_EVENTGRID_TOPIC_ENDPOINT: topic.outputs.endpoint
  // The workspaces subscribed below; reactions.yaml allows exactly these ({from_setting: ...}).
  MLREACTOR_SUBSCRIBED_WORKSPACES: join(workspaceIds, ',')
  // Secrets: Key Vault references, resolved by the platform with the app's identity (Key Vault Secrets User).
  MLREACTOR_DEVOPS_PAT: '${keyVaultReference}${devopsPatSecretName})'
  MLREACTOR_RELEASE_HOOK_SECRET: '${keyVaultReference}${releaseHookSecretName})'
  MLREACTOR_GITHUB_WEBHOOK_SECRET: '${keyVaultReference}${githubWebhookSecretName})'
  MLREACTOR_TEAMS_OPS_URL: '${keyVaultReference}${teamsOpsUrlSecretName})'
  MLREACTOR_SLACK_OPS_URL: '${keyVaultReference}${slackOpsUrlSecretName})'
}
var devopsSettings = {
  MLREACTOR_DEVOPS_ORGANIZATION_URL: devopsOrganizationUrl
}

module api 'app/api.bicep' = {
  name: 'api'
  params: {
    name: functionAppName
    location: location
    tags: tags
    planName: '${abbrs.webServerFarms}mlreactor-${resourceToken}'
    identityId: appIdentity.id
    identityClientId: appIdentity.properties.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appSettings: empty(devopsOrganizationUrl) ? appSettings : union(appSettings, devopsSettings)
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  params: {
    actionGroupName: '${abbrs.insightsActionGroups}mlreactor-${resourceToken}'
    alertEmail: alertEmail
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    tags: tags
  }
}

// With the subscriptions (the postdeploy provision): the test needs the deployed health function's key.
module availability 'app/availability.bicep' = if (deployEventSubscriptions) {
  name: 'availability'
  params: {
    functionAppName: api.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    actionGroupId: alerts.outputs.actionGroupId
    location: location
    tags: tags
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    appPrincipalId: appIdentity.properties.principalId
    eventGridPrincipalId: eventGridIdentity.properties.principalId
    storageAccountName: storage.outputs.name
    deadLetterContainerName: deadLetterContainerName
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    topicName: topic.outputs.name
  }
}

// Per workspace, in the workspace's own subscription and resource group: the system topic with one subscription
// per function, and the app's AzureML Data Scientist role assignment.
module workspaceEvents 'app/workspace-events.bicep' = [
  for (workspaceId, i) in workspaceIds: {
    name: 'workspace-events-${i}'
    scope: resourceGroup(split(workspaceId, '/')[2], split(workspaceId, '/')[4])
    params: {
      workspaceName: last(split(workspaceId, '/'))
      systemTopicName: '${abbrs.eventGridSystemTopics}mlreactor-${last(split(workspaceId, '/'))}'
      tags: tags
      functionAppId: api.outputs.id
      deployEventSubscriptions: deployEventSubscriptions
      maxDeliveryAttempts: eventMaxDeliveryAttempts
      eventTimeToLiveMinutes: eventTimeToLiveMinutes
      eventGridIdentityId: eventGridIdentity.id
      deadLetterStorageAccountId: storage.outputs.id
      deadLetterContainerName: deadLetterContainerName
      subscribeDatasetDriftDetected: subscribeDatasetDriftDetected
      logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
      actionGroupId: alerts.outputs.actionGroupId
    }
    // dead-lettering needs the Event Grid identity's role on the container first
    dependsOn: [
      rbac
    ]
  }
]

module workspaceRbac 'app/workspace-rbac.bicep' = [
  for (workspaceId, i) in workspaceIds: {
    name: 'workspace-rbac-${i}'
    scope: resourceGroup(split(workspaceId, '/')[2], split(workspaceId, '/')[4])
    params: {
      workspaceName: last(split(workspaceId, '/'))
      appPrincipalId: appIdentity.properties.principalId
    }
  }
]

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output MLREACTOR_EVENTGRID_TOPIC_ENDPOINT string = topic.outputs.endpoint
output KEY_VAULT_NAME string = keyVault.outputs.name
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output DEADLETTER_CONTAINER string = deadLetterContainerName
output QUARANTINE_CONTAINER string = quarantineContainerName
output EVENT_SUBSCRIPTIONS_DEPLOYED bool = deployEventSubscriptions
