# azd postdeploy hook on Windows: the same steps as scripts/subscribe-events.sh (read it for the why).
# Waits (bounded) until every function the subscription table names is listed, then provisions again with
# DEPLOY_EVENT_SUBSCRIPTIONS=true.
#
#   $env:MLREACTOR_FUNCTIONS_WAIT_SECONDS   how long to wait for the functions (default 600)
#   $env:MLREACTOR_FUNCTIONS_POLL_SECONDS   between two listings (default 15)
$ErrorActionPreference = 'Stop'
$root = Split-Path -Parent $PSScriptRoot
$wait = if ($env:MLREACTOR_FUNCTIONS_WAIT_SECONDS) { [int]$env:MLREACTOR_FUNCTIONS_WAIT_SECONDS } else { 600 }
$poll = if ($env:MLREACTOR_FUNCTIONS_POLL_SECONDS) { [int]$env:MLREACTOR_FUNCTIONS_POLL_SECONDS } else { 15 }

function Get-EnvValue([string]$name) {
    # azd exports the environment's values to hooks; outside a hook, ask azd
    $value = [Environment]::GetEnvironmentVariable($name)
    if (-not $value) { $value = (azd env get-value $name 2>$null) }
    return "$value".Trim()
}

if ((Get-EnvValue 'DEPLOY_EVENT_SUBSCRIPTIONS') -eq 'true') {
    Write-Host 'Event Grid subscriptions are part of the deployment already.'
    exit 0
}

$app = Get-EnvValue 'AZURE_FUNCTION_NAME'
$group = Get-EnvValue 'AZURE_RESOURCE_GROUP'
if (-not $app -or -not $group) {
    Write-Error 'subscribe-events: AZURE_FUNCTION_NAME or AZURE_RESOURCE_GROUP is not in the azd environment'
    exit 1
}
# The functions Event Grid will deliver to: the `function:` entries of the subscription table.
$expected = Get-Content (Join-Path $root 'infra/app/workspace-events.bicep') |
    Select-String -Pattern "^\s*function: '([A-Za-z0-9_]+)'$" |
    ForEach-Object { $_.Matches[0].Groups[1].Value } | Sort-Object -Unique

$waited = 0
while ($true) {
    # ARM lists a function as "<app>/<function>"; keep the function's name.
    $listed = @(az functionapp function list --resource-group $group --name $app --query '[].name' --output tsv 2>$null |
        ForEach-Object { ($_ -split '/')[-1] })
    $missing = @($expected | Where-Object { $listed -notcontains $_ })
    if ($missing.Count -eq 0) { break }
    if ($waited -ge $wait) {
        Write-Error ("subscribe-events: after ${wait}s, $app still does not list: " + ($missing -join ' ') +
            "`n  check the deployment and run this hook again: azd hooks run postdeploy")
        exit 1
    }
    Write-Host ("Waiting for $app to list its functions (missing: " + ($missing -join ' ') + "; ${waited}s of ${wait}s)")
    Start-Sleep -Seconds $poll
    $waited += $poll
}

Write-Host 'The functions are listed: provisioning again with the Event Grid subscriptions.'
azd env set DEPLOY_EVENT_SUBSCRIPTIONS true
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
azd provision --no-prompt
exit $LASTEXITCODE
