// Bookings bulk invoicing for Business Central: everything one deployment needs in one resource group.
//
//   azd up      (azure.yaml: the app registration hook, this template, the code; docs/operations.md)
//
// Modules, one per concern: identity, monitoring (Log Analytics + Application Insights), storage
// (tables, queues, package container), roles, the Function App, App Service Authentication, alerts.
// No secret exists in Azure: the app runs as its user-assigned identity for storage and telemetry,
// and the app registration trusts that identity through a federated identity credential, so the app
// (ENTRA_MANAGED_IDENTITY_CLIENT_ID) and App Service Authentication
// (OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID) sign in as the registration with its token instead of a
// client secret. No account keys, secrets or connection strings end up in app settings or outputs.

targetScope = 'resourceGroup'

@description('Short name used in every resource name (letters and digits, 3-12).')
@minLength(3)
@maxLength(12)
param appName string = 'bookinv'

@description('Azure region (one that offers Flex Consumption).')
param location string = resourceGroup().location

@description('Tags for every resource.')
param tags object = {}

@description('Name of the azd environment (AZURE_ENV_NAME); tags every resource with azd-env-name. Empty outside azd.')
param environmentName string = ''

// ----- Entra ID app registration (docs/operations.md, "App registration") -----

@description('Tenant of the app registration and of Business Central (ENTRA_TENANT_ID).')
param entraTenantId string = subscription().tenantId

@description('Application (client) id of the app registration (ENTRA_CLIENT_ID); azd\'s preprovision hook (infra/hooks/app_registration.py) creates it and sets it.')
param entraClientId string

@description('Authority host (ENTRA_AUTHORITY_HOST); change only for sovereign clouds.')
param entraAuthorityHost string = 'https://login.microsoftonline.com'

// ----- Microsoft Bookings and Business Central -----

@description('Comma-separated Bookings business ids, the businesses\' SMTP addresses (BOOKINGS_BUSINESS_IDS).')
param bookingsBusinessIds string

@description('IANA time zone for invoice dates and line descriptions (BOOKINGS_TIME_ZONE).')
param bookingsTimeZone string = 'UTC'

@description('Microsoft Graph base URL (GRAPH_BASE_URL).')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

@description('Business Central API base URL (BC_BASE_URL).')
param bcBaseUrl string = 'https://api.businesscentral.dynamics.com/v2.0'

@description('Business Central environment name (BC_ENVIRONMENT).')
param bcEnvironment string = 'Production'

@description('Business Central company id, a GUID (BC_COMPANY_ID).')
param bcCompanyId string

// ----- Behaviour -----

@description('NCRONTAB schedule of sync_bookings, six fields, UTC (SYNC_SCHEDULE).')
param syncSchedule string = '0 */15 * * * *'

@description('Minutes between two sync_bookings runs under syncSchedule; the stalled-sync alert fires after two of them.')
@minValue(1)
@maxValue(1440)
param syncIntervalMinutes int = 15

@description('NCRONTAB schedule of reconcile_invoices, six fields, UTC (RECONCILE_SCHEDULE).')
param reconcileSchedule string = '0 5 * * * *'

@description('Minutes between two reconcile_invoices runs under reconcileSchedule; the stalled-reconcile alert fires after two of them.')
@minValue(1)
@maxValue(1440)
param reconcileIntervalMinutes int = 60

@description('Days after an appointment ended that finished bookings are deleted (RETENTION_DAYS); must exceed syncLookbackDays + 7.')
@minValue(38)
@maxValue(36500)
param retentionDays int = 400

@description('Days the sync reads back for late edits and cancellations (SYNC_LOOKBACK_DAYS).')
@minValue(1)
@maxValue(365)
param syncLookbackDays int = 30

@description('Create a missing customer from the template customer when invoicing (SYNC_CUSTOMERS).')
param syncCustomers bool = true

@description('Create a missing Service item from the template item when invoicing (SYNC_SERVICES).')
param syncServices bool = true

@description('Number of the Business Central customer new customers copy their setup from (CUSTOMER_TEMPLATE).')
param customerTemplate string = ''

@description('Number of the Business Central item new Service items copy their setup from (ITEM_TEMPLATE).')
param itemTemplate string = ''

@description('Invoice date: the appointment\'s end date in the business time zone, or the day of invoicing (INVOICE_DATE).')
@allowed([
  'appointment'
  'today'
])
param invoiceDate string = 'appointment'

@description('Who prices invoice lines (PRICE_SOURCE): bookings (the appointment\'s price by price type) or businessCentral (no unitPrice on the line, so Business Central\'s prices, price lists and discounts apply).')
@allowed([
  'bookings'
  'businessCentral'
])
param priceSource string = 'bookings'

@description('Most bookings one HTTP selection may name (MAX_SELECTION).')
@minValue(1)
@maxValue(100000)
param maxSelection int = 10000

@description('Business Central requests in flight, all instances and callers of the app together (BC_MAX_CONCURRENCY). Business Central runs 5 per app registration at a time.')
@minValue(1)
@maxValue(5)
param bcMaxConcurrency int = 5

@description('Business Central requests per sliding 5 minutes, all instances together (BC_MAX_REQUESTS_PER_5_MIN). Business Central allows 6,000 per app registration; the default leaves a margin.')
@minValue(1)
@maxValue(6000)
param bcMaxRequestsPer5Min int = 5400

@description('More app settings as [{"name": ..., "value": ...}] (for example OTEL_* switches); names must not repeat the ones set here.')
param additionalAppSettings array = []

// ----- Scale and hosting -----

@description('Most Function App instances (per function group; Flex Consumption accepts 40 to 1000). Invoicing is bound by the Business Central budget (bcMaxConcurrency, bcMaxRequestsPer5Min) shared by all instances, not by this: more instances help the HTTP API and the sync. docs/operations.md, "Scale and limits".')
// The lowest maximum scale Flex Consumption accepts is 40 in most regions (the highest 1000):
// https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Zone-redundant Flex Consumption plan (only in regions that offer it).')
param zoneRedundant bool = false

@description('Storage replication: geo- and zone-redundant by default (invoice states survive a regional outage); Standard_GRS where the region has no zones.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_GZRS'

@description('Browser origins allowed to call the API from a web portal. Power Apps custom connectors need none.')
param corsAllowedOrigins array = []

@description('Most worker spans (requests, dependencies) per second sent to Application Insights; more are sampled out (OTEL_TRACES_SAMPLER microsoft.rate_limited). Alert and runbook queries weight rows by itemCount.')
@minValue(1)
@maxValue(1000)
param telemetryTracesPerSecond int = 5

@description('Days Log Analytics keeps telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

// ----- Operations -----

@description('Object id of the operators\' Entra ID group: gets table read and queue roles for the runbook. Empty: none.')
param operatorPrincipalId string = ''

@description('Kind of principal operatorPrincipalId is.')
@allowed([
  'Group'
  'User'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'Group'

@description('Resource id of an existing action group the alerts notify. Empty: a new one is created when alertEmailAddress is set.')
param actionGroupResourceId string = ''

@description('E-mail address of a new action group (when actionGroupResourceId is empty). Both empty: alerts fire without notifying.')
param alertEmailAddress string = ''

@description('Percentage of failed create_invoice executions that raises the failure-rate alert.')
@minValue(1)
@maxValue(100)
param createInvoiceFailureRatePercent int = 10

// ----- Names -----

var token = toLower(uniqueString(subscription().id, resourceGroup().id, appName))
var allTags = empty(environmentName) ? tags : union(tags, { 'azd-env-name': environmentName })
var names = {
  identity: 'id-${appName}-${token}'
  logAnalytics: 'log-${appName}-${token}'
  applicationInsights: 'appi-${appName}-${token}'
  storage: take('st${toLower(appName)}${token}', 24)
  plan: 'asp-${appName}-${token}'
  functionApp: 'func-${appName}-${token}'
  alerts: '${appName}-${token}'
}
var deploymentContainerName = 'app-package-${token}'

// The contract's queue and tables (shared/adapters/invoice_queue.py, the *_TABLE constants in shared/).
var queueNames = [
  'bookings-to-invoice'
  'bookings-to-invoice-poison'
]
var tableNames = [
  'Bookings'
  'SyncState'
  'ReconcileState'
  'InvoiceRequests'
  'BusinessCentralLinks'
  'BusinessCentralBudget'
]

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: names.storage
    location: location
    tags: allTags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    queueNames: queueNames
    tableNames: tableNames
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

// The contract's settings (README "Configuration"), as app settings: name/value pairs, string values.
var contractSettings = [
  {
    name: 'ENTRA_TENANT_ID'
    value: entraTenantId
  }
  {
    name: 'ENTRA_CLIENT_ID'
    value: entraClientId
  }
  {
    // The app's credential: the identity's token, which the app registration's federated identity
    // credential trusts (shared/adapters/managed_identity.py). No secret or certificate.
    name: 'ENTRA_MANAGED_IDENTITY_CLIENT_ID'
    value: identity.outputs.clientId
  }
  {
    // App Service Authentication's credential for browser sign-in, the same trust (easyauth.bicep):
    // Learn, "Configure your App Service or Azure Functions app to use Microsoft Entra sign-in",
    // "Use a managed identity instead of a secret".
    name: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'
    value: identity.outputs.clientId
  }
  {
    name: 'ENTRA_AUTHORITY_HOST'
    value: entraAuthorityHost
  }
  {
    name: 'GRAPH_BASE_URL'
    value: graphBaseUrl
  }
  {
    name: 'BOOKINGS_BUSINESS_IDS'
    value: bookingsBusinessIds
  }
  {
    name: 'BOOKINGS_TIME_ZONE'
    value: bookingsTimeZone
  }
  {
    name: 'BC_BASE_URL'
    value: bcBaseUrl
  }
  {
    name: 'BC_ENVIRONMENT'
    value: bcEnvironment
  }
  {
    name: 'BC_COMPANY_ID'
    value: bcCompanyId
  }
  {
    name: 'SYNC_SCHEDULE'
    value: syncSchedule
  }
  {
    name: 'RECONCILE_SCHEDULE'
    value: reconcileSchedule
  }
  {
    name: 'RETENTION_DAYS'
    value: string(retentionDays)
  }
  {
    name: 'SYNC_LOOKBACK_DAYS'
    value: string(syncLookbackDays)
  }
  {
    name: 'SYNC_CUSTOMERS'
    value: syncCustomers ? 'true' : 'false'
  }
  {
    name: 'SYNC_SERVICES'
    value: syncServices ? 'true' : 'false'
  }
  {
    name: 'CUSTOMER_TEMPLATE'
    value: customerTemplate
  }
  {
    name: 'ITEM_TEMPLATE'
    value: itemTemplate
  }
  {
    name: 'INVOICE_DATE'
    value: invoiceDate
  }
  {
    name: 'MAX_SELECTION'
    value: string(maxSelection)
  }
  {
    name: 'PRICE_SOURCE'
    value: priceSource
  }
  {
    name: 'BC_MAX_CONCURRENCY'
    value: string(bcMaxConcurrency)
  }
  {
    name: 'BC_MAX_REQUESTS_PER_5_MIN'
    value: string(bcMaxRequestsPer5Min)
  }
]

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionApp'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: allTags
    // azd deploys the service `api` (azure.yaml) to the site carrying this tag.
    siteTags: union(allTags, { 'azd-service-name': 'api' })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    blobServiceUri: storage.outputs.blobEndpoint
    queueServiceUri: storage.outputs.queueEndpoint
    tableServiceUri: storage.outputs.tableEndpoint
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    appSettings: concat(contractSettings, additionalAppSettings)
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    telemetryTracesPerSecond: telemetryTracesPerSecond
    zoneRedundant: zoneRedundant
    corsAllowedOrigins: corsAllowedOrigins
  }
  // The host needs its storage and telemetry roles on its very first start.
  dependsOn: [
    roles
  ]
}

// App Service Authentication with the Entra provider in front of the whole app (app roles
// Bookings.Read / Bookings.Invoice: docs/operations.md, "Sign-in and roles").
module easyAuth 'modules/easyauth.bicep' = {
  name: 'easyAuth'
  params: {
    siteName: functionApp.outputs.name
    tenantId: entraTenantId
    clientId: entraClientId
    authorityHost: entraAuthorityHost
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    tags: allTags
    namePrefix: names.alerts
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    actionGroupResourceId: actionGroupResourceId
    alertEmailAddress: alertEmailAddress
    syncIntervalMinutes: syncIntervalMinutes
    reconcileIntervalMinutes: reconcileIntervalMinutes
    createInvoiceFailureRatePercent: createInvoiceFailureRatePercent
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppUrl string = 'https://${functionApp.outputs.defaultHostName}'
output storageAccountName string = storage.outputs.name
output applicationInsightsName string = monitoring.outputs.applicationInsightsName
output logAnalyticsWorkspaceName string = monitoring.outputs.workspaceName
output identityClientId string = identity.outputs.clientId

// For azd's postprovision hook (infra/hooks/app_registration.py), which gives the app registration
// the redirect URI of this host and the federated credential trusting this identity.
output FUNCTION_APP_HOST_NAME string = functionApp.outputs.defaultHostName
output APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output ENTRA_TENANT_ID string = entraTenantId
output ENTRA_AUTHORITY_HOST string = entraAuthorityHost
