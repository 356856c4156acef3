-- API keys: only a sha256 of the secret is stored. A revocation is a newer version.
CREATE TABLE IF NOT EXISTS {db}.api_keys
(
    key_id      String,
    org_id      String,
    name        String,
    scopes      Array(String),
    secret_sha256 FixedString(32),
    created_at  DateTime64(3, 'UTC'),
    revoked_at  Nullable(DateTime64(3, 'UTC')),
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_id
