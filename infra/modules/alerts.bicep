// Azure Monitor log search alerts over Application Insights, and the action group they notify.
// Each query reads the fields the app logs (OpenTelemetry: logger `extra` fields become
// customDimensions); docs/operations.md says what each alert means and what to do.

@description('Azure region of the alert rules.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Prefix of the alert rule names.')
param namePrefix string

@description('Resource id of the Application Insights component the queries run against.')
param applicationInsightsId string

@description('Resource id of an existing action group to notify. Empty: one is created when alertEmailAddress is set.')
param actionGroupResourceId string = ''

@description('E-mail address for a new action group (used only when actionGroupResourceId is empty).')
param alertEmailAddress string = ''

@description('Minutes between two runs of sync_bookings (must match SYNC_SCHEDULE). The heartbeat alert fires when no run completed for two intervals.')
@minValue(1)
@maxValue(1440)
param syncIntervalMinutes int

@description('Minutes between two runs of reconcile_invoices (must match RECONCILE_SCHEDULE). Its heartbeat alert fires when no run succeeded for two intervals.')
@minValue(1)
@maxValue(1440)
param reconcileIntervalMinutes int = 60

@description('Percentage of failed create_invoice executions (in the alert window) above which the failure-rate alert fires.')
@minValue(1)
@maxValue(100)
param createInvoiceFailureRatePercent int = 10

@description('Fewest create_invoice executions in the window before the failure rate is judged (avoids alerting on 1 of 2).')
@minValue(1)
param createInvoiceMinExecutions int = 5

@description('How often the poison, failed-booking and failure-rate alerts run, and the span they look back over.')
@allowed([
  5
  10
  15
  30
  60
])
param alertIntervalMinutes int = 5

var createActionGroup = empty(actionGroupResourceId) && !empty(alertEmailAddress)
var actionGroups = createActionGroup ? [actionGroup.id] : (empty(actionGroupResourceId) ? [] : [actionGroupResourceId])
var interval = 'PT${alertIntervalMinutes}M'
// Telemetry reaches Log Analytics minutes after it happens: look back over two intervals so a late
// row is still seen; the alerts are stateful (autoMitigate), so overlap does not notify twice.
var lookback = 'PT${2 * alertIntervalMinutes}M'

// The heartbeat looks back over two schedule intervals. A rule's window takes only a few values, so
// the window is the smallest one that covers them and the query itself cuts it to the exact span.
var heartbeatMinutes = 2 * syncIntervalMinutes
var heartbeatWindow = heartbeatMinutes <= 30 ? 'PT30M' : heartbeatMinutes <= 60 ? 'PT1H' : heartbeatMinutes <= 120 ? 'PT2H' : heartbeatMinutes <= 360 ? 'PT6H' : heartbeatMinutes <= 1440 ? 'P1D' : 'P2D'
var heartbeatFrequency = syncIntervalMinutes < 15 ? 'PT5M' : 'PT15M'

// A message the host gave up on (after maxDequeueCount attempts) and moved to the poison queue, and
// the timer's per-run report of the poison queue's depth: the alert stays on until it is drained.
var poisonQuery = '''
union
  (traces
   | where message startswith "Message has reached MaxDequeueCount"
   | project timestamp, source = "host", message),
  (traces
   | where isnotempty(customDimensions.poisonDepth) and toint(customDimensions.poisonDepth) > 0
   | project timestamp, source = "sync_bookings", message = strcat("poison queue depth ", tostring(customDimensions.poisonDepth)))
'''

// A booking became Failed (errorCode NO_CUSTOMER, BC_REJECTED, BC_UNAVAILABLE, ...); one alert per code.
var failedBookingsQuery = '''
traces
| where tostring(customDimensions.outcome) == "failed" and isnotempty(customDimensions.bookingKey)
| extend errorCode = tostring(customDimensions.errorCode)
| where isnotempty(errorCode)
| project timestamp, errorCode, businessId = tostring(customDimensions.businessId), bookingKey = tostring(customDimensions.bookingKey)
'''

// Executions of create_invoice that threw (each retry counts): Business Central or storage trouble.
var failureRateQuery = '''
requests
| where name endswith "create_invoice" or tostring(customDimensions["faas.name"]) == "create_invoice"
| summarize executions = count(), failed = countif(success == false)
| where executions >= {0}
| extend failureRatePercent = 100.0 * failed / executions
'''

// sync_bookings logs one summary line per business and run; a successful one carries the end of
// the window it read (windowEnd). None for two intervals: no business has synced.
var heartbeatQuery = '''
traces
| where timestamp > ago({0}m)
| where tostring(customDimensions.outcome) == "succeeded" and isnotempty(customDimensions.windowEnd)
'''

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (createActionGroup) {
  name: '${namePrefix}-ops'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'bookinv-ops'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmailAddress
        useCommonAlertSchema: true
      }
    ]
  }
}

resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-poison-message'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Bookings invoicing: message in the poison queue'
    description: 'A queue message reached maxDequeueCount and was moved to bookings-to-invoice-poison, or the poison queue is not empty. See docs/operations.md, "Poison queue".'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: interval
    windowSize: lookback
    criteria: {
      allOf: [
        {
          query: poisonQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource failedBookingsAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-booking-failed'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Bookings invoicing: booking failed'
    description: 'A booking turned Failed; the errorCode dimension says why. See docs/operations.md, "Failed bookings".'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: interval
    windowSize: lookback
    criteria: {
      allOf: [
        {
          query: failedBookingsQuery
          timeAggregation: 'Count'
          dimensions: [
            {
              name: 'errorCode'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// reconcile_invoices logs one summary per run; a run in which both parts succeeded says
// outcome "reconciled". None for two intervals: it failed (or stopped), like a stalled sync.
var reconcileHeartbeatMinutes = 2 * reconcileIntervalMinutes
var reconcileHeartbeatWindow = reconcileHeartbeatMinutes <= 30 ? 'PT30M' : reconcileHeartbeatMinutes <= 60 ? 'PT1H' : reconcileHeartbeatMinutes <= 120 ? 'PT2H' : reconcileHeartbeatMinutes <= 360 ? 'PT6H' : reconcileHeartbeatMinutes <= 1440 ? 'P1D' : 'P2D'
var reconcileHeartbeatQuery = '''
traces
| where timestamp > ago({0}m)
| where tostring(customDimensions.outcome) == "reconciled"
'''

resource failureRateAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-create-invoice-failure-rate'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Bookings invoicing: create_invoice failure rate'
    description: 'More than ${createInvoiceFailureRatePercent}% of create_invoice executions failed. See docs/operations.md, "create_invoice failure rate".'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: interval
    windowSize: lookback
    criteria: {
      allOf: [
        {
          query: format(failureRateQuery, createInvoiceMinExecutions)
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'failureRatePercent'
          operator: 'GreaterThan'
          threshold: createInvoiceFailureRatePercent
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource heartbeatAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-sync-stalled'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Bookings invoicing: sync_bookings stalled'
    description: 'sync_bookings has not completed a run for two schedule intervals (${heartbeatMinutes} minutes). See docs/operations.md, "Sync stalled".'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: heartbeatFrequency
    windowSize: heartbeatWindow
    criteria: {
      allOf: [
        {
          query: format(heartbeatQuery, heartbeatMinutes)
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource reconcileHeartbeatAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-reconcile-stalled'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Bookings invoicing: reconcile_invoices stalled'
    description: 'reconcile_invoices has not completed a successful run for two schedule intervals (${reconcileHeartbeatMinutes} minutes). See docs/operations.md, "Reconcile stalled".'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: reconcileHeartbeatWindow
    criteria: {
      allOf: [
        {
          query: format(reconcileHeartbeatQuery, reconcileHeartbeatMinutes)
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

output actionGroupIds array = actionGroups
output alertRuleIds array = [
  poisonAlert.id
  failedBookingsAlert.id
  failureRateAlert.id
  heartbeatAlert.id
  reconcileHeartbeatAlert.id
]
