// Log Analytics + workspace-based Application Insights. Local (key) auth is off: the app sends telemetry with its
// managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING + Monitoring Metrics Publisher in rbac.bicep).
param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object
param retentionInDays int

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    retentionInDays: retentionInDays
    sku: {
      name: 'PerGB2018'
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = applicationInsights.name
output logAnalyticsId string = logAnalytics.id
output connectionString string = applicationInsights.properties.ConnectionString
