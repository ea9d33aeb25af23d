// mlreactor's own events (publish_event: mlreactor.ReleaseQueued, mlreactor.GateFailed ...), CloudEvents 1.0, for
// other teams to subscribe to. Key (SAS) auth is off: publishers use Entra ID (EventGrid Data Sender, rbac.bicep).
param name string
param location string
param tags object

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_193: subscribers in other teams' subscriptions and the app (no VNet) reach the topic over its public endpoint; publishing needs an Entra ID role
  name: name
  location: location
  tags: tags
  // An identity subscribers can use to deliver onwards (Service Bus, Event Hubs) without keys.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output name string = topic.name
output endpoint string = topic.properties.endpoint
