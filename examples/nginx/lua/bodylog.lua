-- bodylog.lua -- response body log for an OpenAI-compatible nginx reverse proxy.
--
-- One JSON line per response chunk that nginx relays, then one end record:
--   {"ts":1795471580.608,"request_id":"96cf5988...","data":"data: {...}\n\n"}
--   {"ts":1795471581.287,"request_id":"96cf5988...","end":"complete"}
-- "end" is one of
--   complete        the body filter saw the last buffer (ngx.arg[2])
--   client_closed   the client went away: $status is 499 only if nothing had been
--                   sent yet; after the first byte $status stays 200 and
--                   $request_completion is ""
--   upstream_error  upstream closed / reset / timed out mid-body ($status 200,
--                   $request_completion "OK", client got a truncated body)
-- request_id is nginx's $request_id, the same value as in the access log.
--
-- Usage (nginx.conf):
--   lua_package_path "/path/to/lua/?.lua;;";
--   init_by_lua_block { require("bodylog").configure{ path = "/var/log/x/body.jsonl" } }
--   location /v1/ {
--       header_filter_by_lua_block { require("bodylog").header_filter() }
--       body_filter_by_lua_block   { require("bodylog").body_filter() }
--       log_by_lua_block           { require("bodylog").log() }
--   }
--
-- File handling, per worker process:
--   * the file is opened by the worker, i.e. as the `user` directive's user
--     (www-data), never by the root master: that user must be able to create
--     the file in its directory (or logrotate must `create` it for that user);
--   * raw open(2)/write(2) via LuaJIT FFI: explicit mode (nginx runs with
--     umask 0, so io.open would create a 0666 file), O_APPEND|O_CLOEXEC, and
--     exactly one write(2) per line -> no stdio buffering, a tailer sees each
--     line at once, lines from several workers never interleave;
--   * `nginx -s reopen` does not know about this fd: instead the file is
--     re-opened by path when the fd is older than reopen_interval seconds
--     (0 = open/close for every line; measured to cost about the same CPU).
local ngx = ngx
local ngx_now = ngx.now
local str_format = string.format
local byte = string.byte
local ERR = ngx.ERR
local bit = require "bit"
local ffi = require "ffi"
local C = ffi.C

local M = {
    path = "/var/log/nginx/llm_body.jsonl",
    reopen_interval = 0,
    mode = 416,          -- 0640
    utf8_carry = true,
}

function M.configure(opts)
    for k, v in pairs(opts or {}) do M[k] = v end
end

-- JSON string literal. lua-cjson (Debian package lua-cjson) when present, else a
-- small escaper. Neither validates UTF-8; cjson writes "/" as "\/" (valid JSON).
local json_str
local ok_cjson, cjson = pcall(require, "cjson.safe")
if ok_cjson then
    json_str = cjson.encode
else
    local esc = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
    json_str = function(s)
        return '"' .. (s:gsub('[%c"\\]', function(c)
            return esc[c] or str_format("\\u%04x", c:byte())
        end)) .. '"'
    end
end

-- ------------------------------------------------------------------ file
ffi.cdef[[
int open(const char *pathname, int flags, ...);
long write(int fd, const void *buf, unsigned long count);
int close(int fd);
char *strerror(int errnum);
]]
-- Linux generic values (x86_64, aarch64)
local OPEN_FLAGS = bit.bor(0x1 --[[O_WRONLY]], 0x40 --[[O_CREAT]],
                           0x400 --[[O_APPEND]], 0x80000 --[[O_CLOEXEC]])

local fd, fd_opened_at = -1, 0

local function errstr()
    return ffi.string(C.strerror(ffi.errno()))
end

local function get_fd(now)
    if fd >= 0 and now - fd_opened_at < M.reopen_interval then
        return fd
    end
    if fd >= 0 then C.close(fd); fd = -1 end
    local nfd = C.open(M.path, OPEN_FLAGS, ffi.cast("int", M.mode))
    if nfd < 0 then
        ngx.log(ERR, "bodylog: cannot open ", M.path, ": ", errstr())
        return -1
    end
    fd, fd_opened_at = nfd, now
    return fd
end

local function write_line(line)
    local f = get_fd(ngx_now())
    if f < 0 then return end
    local len = #line
    local n = C.write(f, line, len)
    if n ~= len then      -- error or short write (ENOSPC, EIO, ...)
        ngx.log(ERR, "bodylog: write returned ", tonumber(n), " of ", len, ": ", errstr())
        C.close(f); fd = -1
    end
end

local function head(rid)
    return '{"ts":' .. str_format("%.3f", ngx_now()) .. ',"request_id":"' .. rid .. '"'
end

-- ------------------------------------------------------------------ UTF-8
-- Number of trailing bytes of s that form an incomplete UTF-8 sequence (0..3).
local function utf8_incomplete_tail(s)
    local n = #s
    local stop = n - 3
    if stop < 1 then stop = 1 end
    for i = n, stop, -1 do
        local b = byte(s, i)
        if b < 0x80 then return 0 end                       -- ASCII
        if b >= 0xC0 then                                    -- lead byte
            local need = (b >= 0xF0 and 4) or (b >= 0xE0 and 3) or 2
            local have = n - i + 1
            if have < need then return have end
            return 0
        end                                                  -- continuation byte
    end
    return 0
end

-- ------------------------------------------------------------------ phases
function M.header_filter()
    local ctx = ngx.ctx
    ctx.bodylog = true
    ctx.rid = ngx.var.request_id
end

-- ngx.arg[1] is only read, never modified: the client gets the bytes untouched.
-- With utf8_carry, an incomplete multi-byte character at the end of a chunk is
-- held back and logged with the next chunk, so each "data" is valid UTF-8
-- (boundaries move by <= 3 bytes; the concatenation stays byte-exact).
function M.body_filter()
    local ctx = ngx.ctx
    if not ctx.bodylog then return end
    local chunk, eof = ngx.arg[1], ngx.arg[2]
    if M.utf8_carry then
        if ctx.carry then chunk = ctx.carry .. chunk; ctx.carry = nil end
        if not eof then
            local k = utf8_incomplete_tail(chunk)
            if k > 0 then
                ctx.carry = chunk:sub(-k)
                chunk = chunk:sub(1, -k - 1)
            end
        end
    end
    if chunk ~= "" then
        write_line(head(ctx.rid) .. ',"data":' .. json_str(chunk) .. '}\n')
    end
    if eof and not ctx.ended then
        ctx.ended = true
        write_line(head(ctx.rid) .. ',"end":"complete"}\n')
    end
end

-- Runs for every request of the location, also when no response header was
-- ever produced (client gone before the upstream answered -> 499).
function M.log()
    local ctx = ngx.ctx
    if ctx.ended then return end
    ctx.ended = true
    local var = ngx.var
    local rid = ctx.rid or var.request_id
    if ctx.carry then
        write_line(head(rid) .. ',"data":' .. json_str(ctx.carry) .. '}\n')
        ctx.carry = nil
    end
    local reason = "upstream_error"
    if var.status == "499" or var.request_completion ~= "OK" then
        reason = "client_closed"
    end
    write_line(head(rid) .. ',"end":"' .. reason .. '"}\n')
end

return M
