-- Argo CD health of a medplat resource (StorageTier, DataSource, Pipeline, AccessPolicy,
-- Platform), from its kstatus conditions. The operator sets Ready, Reconciling and Stalled
-- together and consistently, with status.observedGeneration:
--   Stalled=True                    -> Degraded: it cannot progress until someone changes it
--                                      (e.g. a Pipeline the classification policy blocks)
--   Ready=True, for this generation -> Healthy
--   no status, an older generation,
--   Reconciling=True or Ready=False -> Progressing: the operator is still working on it
-- Runs in Argo CD's Lua 5.1 sandbox (gopher-lua): no libraries beyond the base ones.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local generation = obj.metadata.generation
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the medplat operator to report status"
  return hs
end

local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the medplat operator to observe generation " .. generation
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.observedGeneration ~= nil and generation ~= nil
    and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Ready describes generation " .. ready.observedGeneration .. ", not " .. generation
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
