// One Azure ML workspace's events → the functions (deployed into the workspace's resource group: a system topic
// lives beside its source). One Event Grid subscription per Event Grid–triggered function, with the function's
// event types and advanced filters, a retry policy, and dead-lettering to blob with Event Grid's own identity.
//
// A workspace can have only one system topic: if it already has one (made in the portal, say), this deployment
// fails with a conflict; move that topic's subscriptions here and delete it first.
param workspaceName string
param systemTopicName string
param tags object
param functionAppId string
param deployEventSubscriptions bool
param maxDeliveryAttempts int
param eventTimeToLiveMinutes int
param eventGridIdentityId string
param deadLetterStorageAccountId string
param deadLetterContainerName string
@description('Subscribe on_dataset_drift to the v1 DatasetDriftDetected event (gone from the current Azure ML docs).')
param subscribeDatasetDriftDetected bool
@description('Log Analytics workspace for the system topic\'s delivery-failure log.')
param logAnalyticsWorkspaceId string
@description('The action group the topic\'s alerts notify (alerts.bicep).')
param actionGroupId string

// THE SUBSCRIPTION TABLE: one entry per Event Grid–triggered function in function_app.py.
// scripts/subscribe-events.sh and .ps1 read the `function:` lines to know which functions to wait for.
// tests/infra/test_bicep.py parses this variable and checks it against app.get_functions(), so keep it a literal
// (no expressions) with exactly these keys: function, eventTypes, advancedFilters.
// String filters are case-insensitive in Event Grid: 'Failed' also matches the documented 'failed'.
var functionSubscriptions = [
  {
    function: 'on_model_registered'
    eventTypes: [
      'Microsoft.MachineLearningServices.ModelRegistered'
    ]
    advancedFilters: []
  }
  {
    function: 'on_model_deployed'
    eventTypes: [
      'Microsoft.MachineLearningServices.ModelDeployed'
    ]
    advancedFilters: []
  }
  {
    function: 'on_run_completed'
    eventTypes: [
      'Microsoft.MachineLearningServices.RunCompleted'
    ]
    advancedFilters: []
  }
  {
    function: 'on_run_failed'
    eventTypes: [
      'Microsoft.MachineLearningServices.RunStatusChanged'
    ]
    advancedFilters: [
      {
        operatorType: 'StringIn'
        key: 'data.runStatus'
        values: [
          'Failed'
          'Canceled'
        ]
      }
    ]
  }
  {
    function: 'on_dataset_drift'
    eventTypes: [
      'Microsoft.MachineLearningServices.DatasetDriftDetected'
    ]
    advancedFilters: []
  }
  {
    // Azure ML v2 model monitoring: the monitor run's tag carries the breach message; the run itself succeeds.
    // https://learn.microsoft.com/azure/machine-learning/how-to-monitor-model-performance (Event Grid section)
    function: 'on_model_monitor_signal'
    eventTypes: [
      'Microsoft.MachineLearningServices.RunStatusChanged'
    ]
    advancedFilters: [
      {
        operatorType: 'StringContains'
        key: 'data.RunTags.azureml_modelmonitor_threshold_breached'
        values: [
          'has failed due to one or more features violating metric thresholds'
        ]
      }
    ]
  }
]

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: workspace.location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${eventGridIdentityId}': {}
    }
  }
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

// The v1 drift event may stop being accepted (it is gone from the Azure ML event docs): subscribing it is opt-in,
// so a deployment never fails on it.
resource subscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [
  for sub in functionSubscriptions: if (deployEventSubscriptions && (subscribeDatasetDriftDetected || (sub.function != 'on_dataset_drift'))) {
    parent: systemTopic
    name: replace(sub.function, '_', '-')
    properties: {
      eventDeliverySchema: 'EventGridSchema'
      destination: {
        endpointType: 'AzureFunction'
        properties: {
          resourceId: '${functionAppId}/functions/${sub.function}'
          // One event per delivery: a failing event makes Event Grid redeliver only itself.
          maxEventsPerBatch: 1
          preferredBatchSizeInKilobytes: 64
        }
      }
      filter: {
        includedEventTypes: sub.eventTypes
        advancedFilters: sub.advancedFilters
        enableAdvancedFilteringOnArrays: true
      }
      retryPolicy: {
        maxDeliveryAttempts: maxDeliveryAttempts
        eventTimeToLiveInMinutes: eventTimeToLiveMinutes
      }
      deadLetterWithResourceIdentity: {
        identity: {
          type: 'UserAssigned'
          userAssignedIdentity: eventGridIdentityId
        }
        deadLetterDestination: {
          endpointType: 'StorageBlob'
          properties: {
            resourceId: deadLetterStorageAccountId
            blobContainerName: deadLetterContainerName
          }
        }
      }
    }
  }
]

resource topicDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: systemTopic
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'DeliveryFailures'
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

// Events Event Grid gave up on (dead-lettered after the retry policy) and failed delivery attempts (each one a
// redelivery to come). Metrics of Microsoft.EventGrid/systemTopics:
// https://learn.microsoft.com/azure/event-grid/monitor-push-reference
var topicAlerts = [
  {
    name: 'dead-lettered'
    metricName: 'DeadLetteredCount'
    severity: 1
    description: 'Event Grid dead-lettered events for mlreactor: they are in the dead-letter container; redrive them with mlreactor deadletter redrive.'
  }
  {
    name: 'delivery-failures'
    metricName: 'DeliveryAttemptFailCount'
    severity: 2
    description: 'Event Grid could not deliver events to mlreactor functions (they will be retried, then dead-lettered).'
  }
]

resource alerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [
  for alert in topicAlerts: {
    name: 'mlreactor-${alert.name}-${workspaceName}'
    location: 'global'
    tags: tags
    properties: {
      description: alert.description
      severity: alert.severity
      enabled: true
      scopes: [
        systemTopic.id
      ]
      evaluationFrequency: 'PT5M'
      windowSize: 'PT15M'
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            name: alert.metricName
            criterionType: 'StaticThresholdCriterion'
            metricNamespace: 'Microsoft.EventGrid/systemTopics'
            metricName: alert.metricName
            operator: 'GreaterThan'
            threshold: 0
            timeAggregation: 'Total'
          }
        ]
      }
      actions: [
        {
          actionGroupId: actionGroupId
        }
      ]
    }
  }
]

output systemTopicName string = systemTopic.name
output subscriptionNames array = [for sub in functionSubscriptions: replace(sub.function, '_', '-')]
