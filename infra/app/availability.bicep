// An availability test on /api/health (200 only when the rules are valid, the subscribed workspaces allowed, every
// Key Vault reference resolved and the ledger reachable) and its alert. Deployed with the Event Grid subscriptions
// (the postdeploy provision): it needs the deployed health function's key, which exists only once the code does.
param functionAppName string
param applicationInsightsName string
param actionGroupId string
param location string
param tags object

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var testName = 'mlreactor-health-${functionAppName}'

resource healthTest 'Microsoft.Insights/webtests@2022-06-15' = {
  name: testName
  location: location
  // The portal shows a web test under the Application Insights resource this tag names.
  tags: union(tags, {
    'hidden-link:${applicationInsights.id}': 'Resource'
  })
  kind: 'standard'
  properties: {
    SyntheticMonitorId: testName
    Name: 'mlreactor /api/health'
    Enabled: true
    Frequency: 300
    Timeout: 30
    Kind: 'standard'
    RetryEnabled: true
    Locations: [
      {
        Id: 'emea-nl-ams-azr'
      }
      {
        Id: 'emea-gb-db3-azr'
      }
      {
        Id: 'emea-fr-pra-edge'
      }
      {
        Id: 'us-va-ash-azr'
      }
      {
        Id: 'us-ca-sjc-azr'
      }
    ]
    Request: {
      RequestUrl: 'https://${functionApp.properties.defaultHostName}/api/health'
      HttpVerb: 'GET'
      ParseDependentRequests: false
      // The health function's own default key (function-key auth): it opens /api/health and nothing else.
      Headers: [
        {
          key: 'x-functions-key'
          value: listKeys('${functionApp.id}/functions/health', '2024-04-01').default
        }
      ]
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

resource healthAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'mlreactor-health-unavailable'
  location: 'global'
  tags: tags
  properties: {
    description: 'mlreactor /api/health is not 200 from 2 or more test locations: read the report it returns.'
    severity: 1
    enabled: true
    scopes: [
      healthTest.id
      applicationInsights.id
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria'
      webTestId: healthTest.id
      componentId: applicationInsights.id
      failedLocationCount: 2
    }
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}
