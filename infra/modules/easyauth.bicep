// App Service Authentication ("Easy Auth", authsettingsV2) in front of the whole Function App.
// Every request is authenticated by the platform with Microsoft Entra ID before the app sees it:
// browsers sign in at /.auth/login/aad, scripts, flows and the Power Platform connector send an
// access token for the app registration (audience ENTRA_CLIENT_ID or api://ENTRA_CLIENT_ID). The
// platform passes the caller (with its app roles Bookings.Read / Bookings.Invoice) to the app in
// X-MS-CLIENT-PRINCIPAL, and the app checks the role of each operation. Unauthenticated requests
// get 401, except the health probe, the API description and the portal page (excludedPaths).
// Property names: Azure/azure-rest-api-specs, Microsoft.Web stable 2024-04-01, SiteAuthSettingsV2.
// checkov reads every Microsoft.Web/sites/config as if it were the 'web' (siteConfig) or the v1
// 'authsettings' resource; neither applies to authsettingsV2, hence the skips below. The site's
// own settings (HTTPS, TLS, logging) are in functionapp.bicep.

@description('Name of the Function App (Microsoft.Web/sites) to protect.')
param siteName string

@description('Tenant of the app registration.')
param tenantId string

@description('Application (client) id of the app registration that defines the app roles.')
param clientId string

@description('Authority host (sovereign clouds have their own).')
param authorityHost string = 'https://login.microsoftonline.com'

// No secret: with this setting name App Service Authentication signs in as the app registration with
// a client assertion, the token of the managed identity whose client id the setting holds, which the
// registration trusts through a federated identity credential (Learn, "Configure your App Service or
// Azure Functions app to use Microsoft Entra sign-in", "Use a managed identity instead of a secret";
// a preview feature there, for workforce tenants).
@description('App setting App Service Authentication reads its credential from: OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID holds the client id of the managed identity the app registration trusts.')
param clientSecretSettingName string = 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'

@description('Paths that answer without sign-in: the health probe, the API description, and the portal page with its assets (the page signs in through /.auth/login/aad; its data comes from the API, which needs a caller).')
param excludedPaths array = [
  '/api/health'
  '/api/openapi.json'
  '/'
  '/assets/portal.css'
  '/assets/portal.js'
  '/assets/favicon.svg'
]

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:Checks v1 authsettings (properties.enabled); authsettingsV2 enables authentication with platform.enabled and the Entra provider here.
  // checkov:skip=CKV_AZURE_63:A siteConfig check (HTTP logging); this is the authsettingsV2 resource, not siteConfig.
  // checkov:skip=CKV_AZURE_65:A siteConfig check (detailed errors); this is the authsettingsV2 resource, not siteConfig.
  // checkov:skip=CKV_AZURE_66:A siteConfig check (failed request tracing); this is the authsettingsV2 resource, not siteConfig.
  // checkov:skip=CKV_AZURE_80:A siteConfig check (.NET Framework version); this is the authsettingsV2 resource of a Python app.
  // checkov:skip=CKV_AZURE_88:A site check (Azure Files); this is the authsettingsV2 resource, not the site.
  // checkov:skip=CKV_AZURE_222:A site check (public network access), skipped with its reason on the site in functionapp.bicep; this is the authsettingsV2 resource.
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: excludedPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          openIdIssuer: '${authorityHost}/${tenantId}/v2.0'
          clientSecretSettingName: clientSecretSettingName
        }
        validation: {
          // v2 tokens carry the client id, v1 tokens the App ID URI.
          allowedAudiences: [
            clientId
            'api://${clientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output enabled bool = authSettings.properties.platform.enabled
