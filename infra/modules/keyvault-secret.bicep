// One Key Vault secret, written only when a value is given (keyvault.bicep decides). A module of its
// own so the secret resource itself is unconditional and its properties (expiry, content type) are
// checked by the IaC scanner like any other resource.

@description('Name of the existing Key Vault.')
param keyVaultName string

@description('Secret name.')
param name string

@description('Secret value.')
@secure()
param value string

@description('Expiry (ISO 8601): the Entra ID client secret stops working then, so the vault says so too.')
param expiresOn string

@description('What the secret is (shown in the portal and by az keyvault secret show).')
param contentType string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: name
  properties: {
    value: value
    contentType: contentType
    attributes: {
      enabled: true
      exp: dateTimeToEpoch(expiresOn)
    }
  }
}
