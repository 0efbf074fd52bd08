-- Argo CD health check for kiln.dev/Promotion (shipped with the kiln Helm chart; install it
-- under resource.customizations.health.kiln.dev_Promotion in argocd-cm, docs/install.md).
--   Healthy      Succeeded
--   Progressing  Queued, WaitingForGates, Deploying, Baking; kiln has not seen the latest spec
--   Suspended    WaitingForApproval, Frozen: waiting for people or for a freeze to end
--   Degraded     RollingBack, RolledBack, Failed, Aborted, or Stalled (e.g. InvalidSpec)
local hs = { status = "Progressing", message = "Waiting for kiln to report status" }

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  return hs
end

local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for kiln to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local message = status.message
if message == nil or message == "" then
  message = phase
end
hs.message = message

if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "RollingBack" then
  hs.status = "Degraded"
  if status.rollback ~= nil and status.rollback.message ~= nil then
    hs.message = "Rolling back: " .. status.rollback.message
  end
elseif phase == "RolledBack" or phase == "Failed" or phase == "Aborted" then
  hs.status = "Degraded"
  if status.rollback ~= nil and status.rollback.message ~= nil then
    hs.message = phase .. ": " .. status.rollback.message
  end
elseif phase == "WaitingForApproval" or phase == "Frozen" then
  hs.status = "Suspended"
else
  local stalled = condition(status, "Stalled")
  local ready = condition(status, "Ready")
  if stalled ~= nil and stalled.status == "True" then
    hs.status = "Degraded"
    if stalled.message ~= nil and stalled.message ~= "" then
      hs.message = stalled.message
    end
  elseif ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
  else
    hs.status = "Progressing"
  end
end
return hs
