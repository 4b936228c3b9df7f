// The Function App on Flex Consumption (Linux, Python 3.11) and its plan.
// It runs as the user-assigned identity for everything: the host's own storage
// (AzureWebJobsStorage__*), the app package, telemetry ingestion, and (through the app
// registration's federated identity credential) Graph, Business Central and browser sign-in. Flex Consumption manages the runtime itself, so the settings it
// rejects (FUNCTIONS_WORKER_RUNTIME, WEBSITE_RUN_FROM_PACKAGE, WEBSITE_TIME_ZONE) are never set here.

@description('Function App name (globally unique host name).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Tags of the site itself (with azd-service-name, by which azd finds where to deploy the code).')
param siteTags object = tags

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (AzureWebJobsStorage__clientId, telemetry authentication).')
param identityClientId string

@description('Blob container URL the app package is deployed to.')
param deploymentContainerUrl string

@description('Storage endpoints for the identity-based AzureWebJobsStorage connection.')
param blobServiceUri string
param queueServiceUri string
param tableServiceUri string

@description('Application Insights connection string (not a secret with local auth off: ingestion needs the identity).')
param applicationInsightsConnectionString string

@description('Worker spans (requests, dependencies) the Python worker sends per second at most; the rest are sampled out and the kept ones carry itemCount.')
@minValue(1)
@maxValue(1000)
param telemetryTracesPerSecond int = 5

@description('The app\'s own settings (the contract\'s settings), as name/value pairs with string values.')
param appSettings array

@description('Most instances the app scales out to (per function group: create_invoice scales on its own). Flex Consumption accepts 40 to 1000. The shared Business Central budget (BC_MAX_CONCURRENCY) caps requests in flight across all instances, so more instances do not make invoicing faster.')
// Flex Consumption's lowest maximum scale is 40 (1000 the highest); a lower value fails the
// deployment in most regions: https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('Zone-redundant plan (only in regions that offer it for Flex Consumption).')
param zoneRedundant bool = false

@description('Browser origins allowed to call the HTTP API (a portal). Power Apps custom connectors call server-side and need none.')
param corsAllowedOrigins array = []

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy is the zoneRedundant parameter; off by default because not every region offers it for Flex Consumption.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_16:App Service Authentication is configured in modules/easyauth.bicep (authsettingsV2 with the Entra provider); the app runs as its user-assigned identity.
  // checkov:skip=CKV_AZURE_17:Client certificates would break the custom connector and scripts; callers present an Entra ID token over TLS 1.2+.
  // checkov:skip=CKV_AZURE_62:Power Platform connectors call from Microsoft's shared outbound ranges in many regions; callers are authenticated with Entra ID (App Service Authentication) instead.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales instances itself (to zero when idle); there is no fixed minimum count to fail over to.
  // checkov:skip=CKV_AZURE_213:App Service health check pings running instances, which Flex Consumption scales to zero; GET /api/health serves external probes and an availability test instead.
  // checkov:skip=CKV_AZURE_78:FTP is closed by the basicPublishingCredentialsPolicies 'ftp' (allow false) below; siteConfig.ftpsState is not set because current Flex Consumption stamps reject it ("site configuration properties (Site.SiteConfig.FtpsState, ...) for Flex Consumption sites is invalid", github.com/microsoft/azure-pipelines-tasks/issues/21032).
  // checkov:skip=CKV_AZURE_222:The HTTP API must be reachable by Power Apps (custom connector), portals and scripts; App Service Authentication signs every caller in with Entra ID.
  name: name
  location: location
  tags: siteTags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    // Key Vault references, should an operator add one (additionalAppSettings), resolve with it too.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      // No ftpsState (nor linuxFxVersion): Flex Consumption stamps reject them as invalid site
      // configuration properties (github.com/microsoft/azure-pipelines-tasks/issues/21032); FTP is
      // closed by the 'ftp' basicPublishingCredentialsPolicies resource below.
      http20Enabled: true
      remoteDebuggingEnabled: false
      cors: {
        allowedOrigins: corsAllowedOrigins
        supportCredentials: false
      }
      // All settings in one place: a deployment replaces them, so nothing set by hand lingers.
      appSettings: concat(platformSettings, appSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Platform settings: identity-based storage and telemetry. The app's own settings come after them.
//
// Sampling, where it applies. With host.json "telemetryMode": "OpenTelemetry", host.json's
// logging.applicationInsights (samplingSettings, excludedTypes) is not used and the host's own
// telemetry cannot be sampled (github.com/Azure/azure-functions-host/issues/11496); the Python
// worker's Azure Monitor OpenTelemetry distro samples its spans by these OTEL_* settings
// (https://pypi.org/project/azure-monitor-opentelemetry/1.8.11/, "Sampling").
// Sampled rows carry itemCount: queries count with sum(itemCount), never count().
var platformSettings = [
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: blobServiceUri
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: queueServiceUri
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: tableServiceUri
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  {
    name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
    value: 'true'
  }
  {
    name: 'OTEL_TRACES_SAMPLER'
    value: 'microsoft.rate_limited'
  }
  {
    name: 'OTEL_TRACES_SAMPLER_ARG'
    value: string(telemetryTracesPerSecond)
  }
]

// No FTP or basic-auth (publishing profile) deployments: publish with an Entra ID sign-in.
// Both policies need `location` although the type definitions omit it (Bicep warns BCP187): without
// it the deployment fails with "The parameter location has an invalid value"
// (github.com/Azure/bicep-types-az/issues/1571, github.com/Azure/bicep/issues/7396).
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  #disable-next-line BCP187
  location: location
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  #disable-next-line BCP187
  location: location
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output planId string = plan.id
