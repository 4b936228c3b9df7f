// The app's user-assigned managed identity. It is created before the Function App so that its role
// assignments (storage, Application Insights) exist by the time the app first starts:
// no account keys, no connection strings, no secrets in app settings. The app registration trusts it
// through a federated identity credential (infra/hooks/app_registration.py), so it must be assigned
// to this Function App only (Learn, "Use a managed identity instead of a secret").

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
