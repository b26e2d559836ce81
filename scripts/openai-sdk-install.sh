#!/usr/bin/env bash
# Installs the official OpenAI Node SDK (version pinned in
# zimage/server/testdata/openai-sdk/package-lock.json) for the server's
# TestOpenAINodeSDK, which is skipped without it. Needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/../zimage/server/testdata/openai-sdk"
npm ci --no-audit --no-fund --loglevel=error
