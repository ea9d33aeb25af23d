// The vault for the Azure DevOps PAT and the webhook URLs. The template creates no secret (no secret value ever
// passes through a deployment); operators set them with `az keyvault secret set`. RBAC authorization only.
param name string
param location string
param tags object
@description('Log Analytics workspace for the audit log (every secret read, by whom).')
param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: no private networking in this template: Key Vault references from a Function App without VNet integration need the public endpoint; access is Entra ID RBAC only
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109: public endpoint, Entra ID RBAC only
  name: name
  location: location
  tags: tags
  properties: {
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

resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
