-- Argo CD health check for smtp-operator.io/SmtpSettings and smtp-operator.io/ClusterSmtpSettings (same status).
-- Install it as `resource.customizations.health.smtp-operator.io_SmtpSettings` and
-- `resource.customizations.health.smtp-operator.io_ClusterSmtpSettings` in argocd-cm (see README.md).
--   Healthy      Ready=True and the operator has observed the current generation; with an early warning
--                (Degraded=True: CertificateExpiresSoon, AuthOverPlaintextOffered, BasicAuthDeprecated) still
--                Healthy (mail flows), the message is then the warning's
--   Progressing  no status yet, the current generation not observed yet, or Ready=Unknown
--                (CheckPending: a check is owed; CheckDeferred: waiting for the rate limits)
--   Degraded     Ready=False; the message is the Ready condition's message
-- Written for Lua 5.1 (Argo CD's interpreter) and newer.
local hs = {}

local function num(v)
  if v == nil then return nil end
  return tonumber(v)
end

local generation = nil
if obj.metadata ~= nil then
  generation = num(obj.metadata.generation)
end

-- the operator has not yet checked the current spec
local function behind(observed)
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check generation " .. tostring(generation) ..
    " (last checked: " .. tostring(observed) .. ")"
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check the settings"
  return hs
end

local observed = num(obj.status.observedGeneration)
if generation ~= nil and observed ~= nil and observed < generation then
  return behind(observed)
end

local ready = nil
local degraded = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    elseif c.type == "Degraded" then
      degraded = c
    end
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check the settings"
  return hs
end

-- a Ready condition written for an older generation says nothing about the current spec
local condGen = num(ready.observedGeneration)
if generation ~= nil and condGen ~= nil and condGen < generation then
  return behind(condGen)
end

local message = ready.message
if message == nil or message == "" then
  message = ready.reason or ""
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  if degraded ~= nil and degraded.status == "True" then
    hs.message = "Warning (" .. tostring(degraded.reason) .. "): " .. tostring(degraded.message)
  end
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = message
else
  hs.status = "Progressing"
  if ready.message ~= nil and ready.message ~= "" then
    hs.message = ready.message
  elseif ready.reason == "CheckDeferred" then
    hs.message = "Check deferred by the rate limits"
  else
    hs.message = "Check pending"
  end
end
return hs
