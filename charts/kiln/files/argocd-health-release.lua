-- Argo CD health check for kiln.dev/Release (shipped with the kiln Helm chart; install it
-- under resource.customizations.health.kiln.dev_Release in argocd-cm, docs/install.md).
--   Healthy      Succeeded: deployed and baked in every environment
--   Progressing  on its way; kiln has not seen the latest spec
--   Suspended    the environment it is in waits for people (AwaitingPromotion,
--                WaitingForApproval) or for a freeze to end (Frozen)
--   Degraded     RolledBack, Failed, Stalled (e.g. InvalidSpec), or rolling back somewhere
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

local function describe(env)
  local text = env.name .. ": " .. (env.phase or "Pending")
  if env.message ~= nil and env.message ~= "" then
    text = text .. " (" .. env.message .. ")"
  end
  return text
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
local ready = condition(status, "Ready")
local stalled = condition(status, "Stalled")
hs.message = phase
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  return hs
end
if phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  if stalled.message ~= nil and stalled.message ~= "" then
    hs.message = stalled.message
  end
  return hs
end

-- Pending or Progressing: the environments say where it stands.
local current = nil
if status.environments ~= nil then
  for _, env in ipairs(status.environments) do
    if env.phase == "RollingBack" then
      hs.status = "Degraded"
      hs.message = "Rolling back in " .. describe(env)
      return hs
    end
    if current == nil and env.phase ~= "Succeeded" then
      current = env
    end
    if status.currentEnvironment ~= nil and env.name == status.currentEnvironment and env.phase ~= "Succeeded" then
      current = env
    end
  end
end
if current ~= nil then
  hs.message = describe(current)
  if current.phase == "AwaitingPromotion" or current.phase == "WaitingForApproval" or current.phase == "Frozen" then
    hs.status = "Suspended"
    return hs
  end
end
hs.status = "Progressing"
return hs
