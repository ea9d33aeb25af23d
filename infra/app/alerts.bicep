// Who is told when something goes wrong, and about what: an action group (e-mail) and the alerts of the app's
// resource group — function failures and quarantined events. The system topics' alerts (dead-lettered events,
// delivery failures) live beside each topic (workspace-events.bicep); the availability test on /api/health in
// availability.bicep.
param actionGroupName string
@description('E-mail address the action group notifies; empty: the alerts fire (portal, Azure Monitor) but e-mail no one.')
param alertEmail string
param applicationInsightsName string
param tags object

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'mlreactor'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'ops-email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Failed function executions (Event Grid invocations that raised, HTTP 5xx): the host records each execution as an
// Application Insights request. A raise is a transient failure Event Grid will redeliver; many in a row mean an
// outage of Azure ML, Azure DevOps or a channel.
resource functionFailures 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'mlreactor-function-failures'
  location: 'global'
  tags: tags
  properties: {
    description: 'mlreactor: function executions failed (transient failures Event Grid redelivers, or HTTP 5xx).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'failed-requests'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Count'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// Quarantined events: the app's counter mlreactor.events with outcome=quarantined (shared/telemetry.py), which the
// Azure Monitor OpenTelemetry exporter writes to Application Insights' customMetrics table. A quarantined event
// waits for a person: fix the cause, then `mlreactor deadletter redrive --quarantined`.
resource quarantinedEvents 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'mlreactor-quarantined-events'
  location: resourceGroup().location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'mlreactor: events quarantined'
    description: 'mlreactor quarantined events (permanent errors, never retried): read the reason in the audit and redrive once fixed.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == "mlreactor.events" | where tostring(customDimensions.outcome) == "quarantined" | summarize quarantined = sum(valueSum)'
          timeAggregation: 'Total'
          metricMeasureColumn: 'quarantined'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
