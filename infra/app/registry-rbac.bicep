// The app's role on one Azure ML registry (deployed into the registry's resource group): AzureML Registry User
// (1823dd4f-9b8c-4ab6-ab4e-7397a3684615: Microsoft.MachineLearningServices/registries/read and registries/assets/*)
// is the narrowest built-in role that reads and writes model versions in a registry (tag_model on a registry, the
// gate's champion lookup); it cannot create, change or delete the registry itself. Reader cannot write assets;
// Contributor could delete the registry. Microsoft's "Manage access to Azure Machine Learning workspaces", the
// registries section: "Can get registries, and read, write and delete assets within them".
param registryName string
param appPrincipalId string

var azureMlRegistryUser = '1823dd4f-9b8c-4ab6-ab4e-7397a3684615'

resource registry 'Microsoft.MachineLearningServices/registries@2024-10-01' existing = {
  name: registryName
}

resource appRegistryUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, appPrincipalId, azureMlRegistryUser)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureMlRegistryUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}
