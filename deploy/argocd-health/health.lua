-- Argo CD health check for lockstep.dev/DatabaseMigration.
--
-- Lockstep's status follows kstatus: status.observedGeneration, a Ready condition that is always
-- present, and Reconciling / Stalled conditions present only while true.
--   Degraded     Stalled=True: retries exhausted, a permanent failure or a config error
--   Progressing  no status yet, observedGeneration behind metadata.generation, Reconciling=True
--                (a Job runs, waits for the lock or another Job, or a retry is scheduled)
--   Suspended    Ready=False because of spec.suspend or a pending approval
--   Healthy      Ready=True for the current generation (a Drifted=True condition is appended)
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Lockstep to reconcile the migration"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for Lockstep to observe generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or stalled.reason or "Stalled"
  return hs
end

local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message or reconciling.reason or "Reconciling"
  return hs
end

local ready = condition(conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Migrated"
  local drifted = condition(conditions, "Drifted")
  if drifted ~= nil and drifted.status == "True" then
    hs.message = hs.message .. "; drifted: " .. (drifted.message or drifted.reason or "")
  end
  return hs
end

if ready.status == "False" and (ready.reason == "Suspended" or ready.reason == "AwaitingApproval") then
  hs.status = "Suspended"
  hs.message = ready.message or ready.reason
  return hs
end

hs.status = "Progressing"
hs.message = ready.message or ready.reason or "Not ready"
return hs
