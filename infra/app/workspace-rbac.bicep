// The app's role on one Azure ML workspace (deployed into the workspace's resource group): AzureML Data Scientist
// lets it submit jobs and read/update models and job tags, but not manage compute or the workspace itself.
param workspaceName string
param appPrincipalId string

var azureMlDataScientist = 'f6c7c914-8db3-469d-8ca1-694a8f32e121'

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

resource appDataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, azureMlDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureMlDataScientist)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}
