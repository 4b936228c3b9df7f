// Azure Monitor log search alerts over Application Insights, and the action group they notify.
// Each query reads the fields the app logs (OpenTelemetry: logger `extra` fields become
// customDimensions); docs/operations.md says what each alert means and what to do.
//
// Rows may be sampled (the Python worker's spans are rate-limited; a kept row stands for itemCount
// rows), so a query that counts sums itemCount instead of counting rows. A rule that only asks
// whether any row exists (threshold 0 or 1 on the row count) is not changed by sampling.

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

@description('How often the poison, failed-booking and failure-rate alerts run; they look back over two of these (the poison alert over at least two sync intervals).')
// Only intervals whose double is a window Azure accepts: 10 would make a 20-minute windowSize and
// 45 a 90-minute one, which the API rejects (see windowMinutes below).
@allowed([
  5
  15
  30
  60
])
param alertIntervalMinutes int = 5

var createActionGroup = empty(actionGroupResourceId) && !empty(alertEmailAddress)
var actionGroups = createActionGroup ? [actionGroup.id] : (empty(actionGroupResourceId) ? [] : [actionGroupResourceId])
// The windows (windowSize) a log search alert accepts, in minutes, and their ISO 8601 durations.
// The API answers any other value with "Supported granularities are: 5, 10, 15, 30, 45, 60, 120,
// 180, 240, 300, 360, 1440, 2880" (github.com/Azure/azure-rest-api-specs/issues/21258, against
// specification/monitor/resource-manager/Microsoft.Insights/stable/2021-08-01/scheduledQueryRule_API.json,
// which types windowSize as a bare duration). Durations are written as Microsoft Learn's samples
// write them (PT1H, P1D), so a value is valid whether or not the service normalises PT60M.
// Looking a value up here fails the deployment at validation for a window Azure would reject.
var windowDurations = {
  '5': 'PT5M'
  '10': 'PT10M'
  '15': 'PT15M'
  '30': 'PT30M'
  '45': 'PT45M'
  '60': 'PT1H'
  '120': 'PT2H'
  '180': 'PT3H'
  '240': 'PT4H'
  '300': 'PT5H'
  '360': 'PT6H'
  '1440': 'P1D'
  '2880': 'P2D'
}

var interval = windowDurations[string(alertIntervalMinutes)]
// Telemetry reaches Log Analytics minutes after it happens: look back over two intervals so a late
// row is still seen; the alerts are stateful (autoMitigate), so overlap does not notify twice.
var lookback = windowDurations[string(2 * alertIntervalMinutes)]

// The heartbeat looks back over two schedule intervals. A rule's window takes only the values above,
// so the window is the smallest one that covers them and the query itself cuts it to the exact span.
var heartbeatMinutes = 2 * syncIntervalMinutes
var heartbeatWindowMinutes = heartbeatMinutes <= 30 ? 30 : heartbeatMinutes <= 60 ? 60 : heartbeatMinutes <= 120 ? 120 : heartbeatMinutes <= 180 ? 180 : heartbeatMinutes <= 240 ? 240 : heartbeatMinutes <= 300 ? 300 : heartbeatMinutes <= 360 ? 360 : heartbeatMinutes <= 1440 ? 1440 : 2880
var heartbeatWindow = windowDurations[string(heartbeatWindowMinutes)]
var heartbeatFrequency = syncIntervalMinutes < 15 ? 'PT5M' : 'PT15M'

// The poison alert's standing evidence is the backlog line sync_bookings logs once per run, that is
// every syncIntervalMinutes (functions/sync.py -> shared/backlog.py, poisonDepth). A window shorter
// than that interval holds no such line between two runs: the alert would resolve and fire again
// (flicker). So it looks back over two sync intervals (a late run, ingestion delay), and never less
// than the other alerts' lookback; the query keeps only the latest evidence, so a drained queue
// resolves the alert at the next run however long the window is.
var poisonMinutes = max(2 * syncIntervalMinutes, 2 * alertIntervalMinutes)
var poisonWindowMinutes = poisonMinutes <= 5 ? 5 : poisonMinutes <= 10 ? 10 : poisonMinutes <= 15 ? 15 : poisonMinutes <= 30 ? 30 : poisonMinutes <= 45 ? 45 : poisonMinutes <= 60 ? 60 : poisonMinutes <= 120 ? 120 : poisonMinutes <= 180 ? 180 : poisonMinutes <= 240 ? 240 : poisonMinutes <= 300 ? 300 : poisonMinutes <= 360 ? 360 : poisonMinutes <= 1440 ? 1440 : 2880
var poisonWindow = windowDurations[string(poisonWindowMinutes)]

// The latest word on the poison queue: the host's line when it gives up on a message (after
// maxDequeueCount attempts) and moves it there (depth at least 1), or the timer's per-run report of
// the queue's depth. The alert is on while the latest of them says the queue is not empty, so it
// stays on until the queue is drained and resolves at the first report of an empty queue.
var poisonQuery = '''
union
  (traces
   | where message startswith "Message has reached MaxDequeueCount"
   | project timestamp, source = "host", poisonDepth = 1),
  (traces
   | where isnotempty(customDimensions.poisonDepth)
   | project timestamp, source = "sync_bookings", poisonDepth = toint(customDimensions.poisonDepth))
| summarize arg_max(timestamp, source, poisonDepth)
| where poisonDepth > 0
| project timestamp, source, poisonDepth, message = strcat("poison queue depth at least ", tostring(poisonDepth))
'''

// A booking became Failed (errorCode NO_CUSTOMER, BC_REJECTED, BC_UNAVAILABLE, ...); one alert per code.
var failedBookingsQuery = '''
traces
| where tostring(customDimensions.outcome) == "failed" and isnotempty(customDimensions.bookingKey)
| extend errorCode = tostring(customDimensions.errorCode)
| where isnotempty(errorCode)
| summarize failures = sum(itemCount) by errorCode
'''

// Executions of create_invoice that threw (each retry counts): Business Central or storage trouble.
var failureRateQuery = '''
requests
| where name endswith "create_invoice" or tostring(customDimensions["faas.name"]) == "create_invoice"
| summarize executions = sum(itemCount), failed = sumif(itemCount, success == false)
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

// sync_bookings logs one summary line per business and run, marked with syncResult "succeeded" or
// "failed" (shared/services/booking_sync.py). A business with runs in the last two intervals and
// not one success fails every run (its mailbox answers 403, it was removed, ...) while others may
// succeed: the heartbeat above counts any success and stays quiet. One alert per businessId.
var businessSyncFailingQuery = '''
traces
| where timestamp > ago({0}m)
| where isnotempty(customDimensions.syncResult)
| extend businessId = tostring(customDimensions.businessId), syncResult = tostring(customDimensions.syncResult)
| summarize failedRuns = sumif(itemCount, syncResult == "failed"), succeededRuns = sumif(itemCount, syncResult == "succeeded"), arg_max(timestamp, message) by businessId
| where failedRuns > 0 and succeededRuns == 0
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
    windowSize: poisonWindow
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
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
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
// The smallest accepted window covering two intervals, as for the sync's heartbeat.
var reconcileHeartbeatWindowMinutes = reconcileHeartbeatMinutes <= 30 ? 30 : reconcileHeartbeatMinutes <= 60 ? 60 : reconcileHeartbeatMinutes <= 120 ? 120 : reconcileHeartbeatMinutes <= 180 ? 180 : reconcileHeartbeatMinutes <= 240 ? 240 : reconcileHeartbeatMinutes <= 300 ? 300 : reconcileHeartbeatMinutes <= 360 ? 360 : reconcileHeartbeatMinutes <= 1440 ? 1440 : 2880
var reconcileHeartbeatWindow = windowDurations[string(reconcileHeartbeatWindowMinutes)]
var reconcileHeartbeatFrequency = reconcileIntervalMinutes < 15 ? 'PT5M' : 'PT15M'
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

resource businessSyncFailingAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-business-sync-failing'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Bookings invoicing: a business fails every sync'
    description: 'Every sync_bookings run of one Bookings business failed for two schedule intervals (${heartbeatMinutes} minutes); the businessId dimension names it. See docs/operations.md, "A business fails every sync".'
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
          query: format(businessSyncFailingQuery, heartbeatMinutes)
          timeAggregation: 'Total'
          metricMeasureColumn: 'failedRuns'
          dimensions: [
            {
              name: 'businessId'
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
    evaluationFrequency: reconcileHeartbeatFrequency
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
  businessSyncFailingAlert.id
  reconcileHeartbeatAlert.id
]
