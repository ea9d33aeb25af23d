// The app's data role on a workspace's default datastore storage account (deployed into that account's resource
// group), for batch-endpoint invocations whose inputs are on an identity-based datastore: the job is created under
// the invoking identity, which must "read and write data to data stores" (Microsoft's "Authorization on batch
// endpoints"). Storage Blob Data Contributor is the built-in role with blob read and write and nothing else (no
// keys, no account management); scoped to that one account.
param storageAccountName string
param appPrincipalId string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource datastore 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appDatastore 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(datastore.id, appPrincipalId, storageBlobDataContributor)
  scope: datastore
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}
