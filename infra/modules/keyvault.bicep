// Key Vault for the app registration's client secret. RBAC only (no access policies), soft delete and
// purge protection on, so a deleted vault or secret can be recovered and never silently replaced.
// The Function App reads the secret through a Key Vault reference with its user-assigned identity;
// the secret value never appears in app settings, deployment outputs or logs.

@description('Key Vault name (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name of the secret that holds the client secret (ENTRA_CLIENT_SECRET).')
param clientSecretName string

@description('The client secret. Empty: the secret is not written by this deployment (set it with az keyvault secret set; see docs/operations.md).')
@secure()
param clientSecretValue string = ''

@description('When the client secret expires in Entra ID (ISO 8601, e.g. 2027-01-31T00:00:00Z); stored as the secret\'s expiry so it shows up before it breaks invoicing.')
param clientSecretExpiresOn string

@description('Days a deleted vault or secret stays recoverable.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Log Analytics workspace that receives the vault\'s audit log.')
param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:Flex Consumption without VNet integration resolves Key Vault references over the public endpoint; access is RBAC-only (Key Vault Secrets User for the app identity).
  // checkov:skip=CKV_AZURE_189:Same as CKV_AZURE_109: public network access is needed to resolve the Key Vault reference without a VNet; every read is audited to Log Analytics.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

module clientSecret 'keyvault-secret.bicep' = if (!empty(clientSecretValue)) {
  name: 'keyVault-clientSecret'
  params: {
    keyVaultName: vault.name
    name: clientSecretName
    value: clientSecretValue
    expiresOn: clientSecretExpiresOn
    contentType: 'text/plain; Entra ID client secret of the invoicing app registration'
  }
}

resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output id string = vault.id
output name string = vault.name
output vaultUri string = vault.properties.vaultUri
// Versionless, so a rotated secret (a new version) is picked up without redeploying.
output clientSecretUri string = '${vault.properties.vaultUri}secrets/${clientSecretName}'
