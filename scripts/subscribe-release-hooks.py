#!/usr/bin/env python3
"""Create or update the Azure DevOps service-hooks subscriptions that send release signals to mlreactor.

    MLREACTOR_RELEASE_HOOK_SECRET=... [MLREACTOR_DEVOPS_PAT=...] scripts/subscribe-release-hooks.py \\
        --organization https://dev.azure.com/contoso --project mlops \\
        --url "https://APP.azurewebsites.net/api/hooks/azure-devops/contoso?code=FUNCTION_KEY" [--dry-run]

Idempotent (see shared/releases/subscriptions.py). Without a PAT it uses the signed-in identity (az login).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.releases.subscriptions import main

if __name__ == "__main__":
    sys.exit(main())
