-- Runs charts/smtp-operator/argocd/health.lua against every case file given on the command line and fails on
-- any mismatch. A case is JSON: {"expect": {"status": "...", "message": "..."}, "object": {...SmtpSettings...}}
-- ("message" is compared exactly; "messageContains" as a plain substring).
-- Usage: lua5.4 tests/argocd/run.lua HEALTH_LUA CASE.json...

-- A small JSON decoder (objects, arrays, strings with escapes, numbers, true/false/null): enough for the cases.
local function decode(text)
  local pos = 1
  local function fail(what)
    error(string.format("JSON: %s at byte %d", what, pos), 0)
  end
  local function ws()
    pos = text:find("[^ \t\r\n]", pos) or (#text + 1)
  end
  local value
  local function str()
    pos = pos + 1
    local out = {}
    while true do
      local c = text:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1; break end
      if c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        local map = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if map[e] then
          out[#out + 1] = map[e]; pos = pos + 2
        elseif e == "u" then
          local cp = tonumber(text:sub(pos + 2, pos + 5), 16) or fail("bad \\u escape")
          out[#out + 1] = utf8.char(cp); pos = pos + 6
        else
          fail("bad escape")
        end
      else
        out[#out + 1] = c; pos = pos + 1
      end
    end
    return table.concat(out)
  end
  value = function()
    ws()
    local c = text:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local t = {}
      ws()
      if text:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        ws()
        if text:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = str()
        ws()
        if text:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = value()
        ws()
        local d = text:sub(pos, pos); pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      pos = pos + 1
      local t = {}
      ws()
      if text:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = text:sub(pos, pos); pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    elseif text:sub(pos, pos + 3) == "true" then
      pos = pos + 4; return true
    elseif text:sub(pos, pos + 4) == "false" then
      pos = pos + 5; return false
    elseif text:sub(pos, pos + 3) == "null" then
      pos = pos + 4; return nil
    else
      local n = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not n or n == "" then fail("unexpected character") end
      pos = pos + #n
      return tonumber(n)
    end
  end
  local v = value()
  ws()
  if pos <= #text then fail("trailing data") end
  return v
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local health = arg[1]
if not health or #arg < 2 then
  io.stderr:write("usage: run.lua HEALTH_LUA CASE.json...\n")
  os.exit(2)
end

local passed, failed = 0, 0
for i = 2, #arg do
  local path = arg[i]
  local ok, err = pcall(function()
    local case = decode(slurp(path))
    assert(type(case.expect) == "table" and type(case.object) == "table", "case needs 'expect' and 'object'")
    local env = setmetatable({ obj = case.object }, { __index = _G })
    local chunk = assert(loadfile(health, "t", env))
    local hs = chunk()
    assert(type(hs) == "table", "health script returned " .. type(hs))
    local e = case.expect
    if hs.status ~= e.status then
      error(string.format("status %q, want %q (message %q)", tostring(hs.status), e.status, tostring(hs.message)), 0)
    end
    if e.message ~= nil and hs.message ~= e.message then
      error(string.format("message %q, want %q", tostring(hs.message), e.message), 0)
    end
    if e.messageContains ~= nil and not (type(hs.message) == "string" and hs.message:find(e.messageContains, 1, true)) then
      error(string.format("message %q does not contain %q", tostring(hs.message), e.messageContains), 0)
    end
  end)
  if ok then
    passed = passed + 1
    print("ok   " .. path)
  else
    failed = failed + 1
    print("FAIL " .. path .. ": " .. tostring(err))
  end
end
print(string.format("argocd-health: %d passed, %d failed", passed, failed))
os.exit(failed == 0 and passed > 0 and 0 or 1)
