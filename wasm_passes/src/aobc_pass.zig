//! aobc-pass-v1 for Zig: the ABI glue, the parsed input, and an output builder.
//!
//! A pass is a file with a manifest and a `run` function, and one line that exports it:
//!
//!     const aobc = @import("aobc_pass.zig");
//!     pub const manifest = \\{"name": "my-pass", "version": "0.1.0", "reads": ["node.loc"]}
//!     ;
//!     pub fn run(in: aobc.Input, out: *aobc.Output) !void { ... }
//!     comptime { aobc.exportPass(@This()); }
//!
//! Everything lives in one arena that is never freed: each call runs in a fresh instance,
//! so the host throws the whole memory away afterwards. See wasm_passes/ABI.md.

const std = @import("std");

pub const Value = std.json.Value;
pub const Allocator = std.mem.Allocator;
pub const ABI_VERSION: i32 = 1;

/// The parsed input: the pass's options and the projected graph.
pub const Input = struct {
    arena: Allocator,
    options: Value,
    graph: Value,

    pub fn nodes(self: Input) []Value {
        return array(self.graph, "nodes");
    }
    pub fn edges(self: Input) []Value {
        return array(self.graph, "edges");
    }
    pub fn outputs(self: Input) []Value {
        return array(self.graph, "outputs");
    }
    /// A boolean option (false when absent).
    pub fn flag(self: Input, name: []const u8) bool {
        return boolean(self.options, name) orelse false;
    }
};

// --- reading values --------------------------------------------------------------------

/// `v[key]` when `v` is an object that has it.
pub fn get(v: Value, key: []const u8) ?Value {
    return switch (v) {
        .object => |o| o.get(key),
        else => null,
    };
}

pub fn string(v: Value, key: []const u8) ?[]const u8 {
    const x = get(v, key) orelse return null;
    return switch (x) {
        .string => |s| s,
        else => null,
    };
}

pub fn boolean(v: Value, key: []const u8) ?bool {
    const x = get(v, key) orelse return null;
    return switch (x) {
        .bool => |b| b,
        else => null,
    };
}

/// The text of a number member, as the host wrote it (numbers are never re-formatted).
pub fn number(v: Value, key: []const u8) ?[]const u8 {
    const x = get(v, key) orelse return null;
    return switch (x) {
        .number_string => |s| s,
        else => null,
    };
}

pub fn array(v: Value, key: []const u8) []Value {
    const x = get(v, key) orelse return &.{};
    return switch (x) {
        .array => |a| a.items,
        else => &.{},
    };
}

// --- writing JSON ------------------------------------------------------------------------

pub const Buf = std.ArrayList(u8);

pub fn writeString(a: Allocator, out: *Buf, s: []const u8) !void {
    try out.append(a, '"');
    for (s) |c| {
        switch (c) {
            '"' => try out.appendSlice(a, "\\\""),
            '\\' => try out.appendSlice(a, "\\\\"),
            '\n' => try out.appendSlice(a, "\\n"),
            '\r' => try out.appendSlice(a, "\\r"),
            '\t' => try out.appendSlice(a, "\\t"),
            0...8, 11, 12, 14...0x1f => try out.print(a, "\\u{x:0>4}", .{c}),
            else => try out.append(a, c),
        }
    }
    try out.append(a, '"');
}

/// Any parsed value, written back; object members keep their order.
pub fn writeValue(a: Allocator, out: *Buf, v: Value) !void {
    switch (v) {
        .null => try out.appendSlice(a, "null"),
        .bool => |b| try out.appendSlice(a, if (b) "true" else "false"),
        .integer => |i| try out.print(a, "{d}", .{i}),
        .float => |f| try out.print(a, "{e}", .{f}),
        .number_string => |s| try out.appendSlice(a, s),
        .string => |s| try writeString(a, out, s),
        .array => |arr| {
            try out.append(a, '[');
            for (arr.items, 0..) |item, i| {
                if (i > 0) try out.append(a, ',');
                try writeValue(a, out, item);
            }
            try out.append(a, ']');
        },
        .object => |o| {
            try out.append(a, '{');
            var it = o.iterator();
            var first = true;
            while (it.next()) |kv| {
                if (!first) try out.append(a, ',');
                first = false;
                try writeString(a, out, kv.key_ptr.*);
                try out.append(a, ':');
                try writeValue(a, out, kv.value_ptr.*);
            }
            try out.append(a, '}');
        },
    }
}

// --- the output ----------------------------------------------------------------------------

pub const RemarkKind = enum { passed, missed, analysis };

/// What a pass produces: an RFC 6902 patch, remarks and counters.
pub const Output = struct {
    a: Allocator,
    patch: Buf = .empty,
    remarks: Buf = .empty,
    stats: std.StringArrayHashMapUnmanaged(i64) = .empty,
    /// Set it (and return an error) to fail with a message of your own.
    failure: ?[]const u8 = null,

    pub fn op(self: *Output, name: []const u8, path: []const u8) !void {
        if (self.patch.items.len > 0) try self.patch.append(self.a, ',');
        try self.patch.appendSlice(self.a, "{\"op\":\"");
        try self.patch.appendSlice(self.a, name);
        try self.patch.appendSlice(self.a, "\",\"path\":");
        try writeString(self.a, &self.patch, path);
    }

    /// `{"op": "remove", "path": path}`.
    pub fn remove(self: *Output, path: []const u8) !void {
        try self.op("remove", path);
        try self.patch.append(self.a, '}');
    }

    /// `{"op": "add"|"replace"|"test", "path": path, "value": value}`.
    pub fn withValue(self: *Output, name: []const u8, path: []const u8, value: Value) !void {
        try self.op(name, path);
        try self.patch.appendSlice(self.a, ",\"value\":");
        try writeValue(self.a, &self.patch, value);
        try self.patch.append(self.a, '}');
    }

    /// The same, with the value already written as JSON text.
    pub fn withRawValue(self: *Output, name: []const u8, path: []const u8, json: []const u8) !void {
        try self.op(name, path);
        try self.patch.appendSlice(self.a, ",\"value\":");
        try self.patch.appendSlice(self.a, json);
        try self.patch.append(self.a, '}');
    }

    pub fn remark(
        self: *Output,
        kind: RemarkKind,
        name: []const u8,
        nodes: []const []const u8,
        message: []const u8,
        loc: ?[]const u8,
    ) !void {
        const a = self.a;
        const r = &self.remarks;
        if (r.items.len > 0) try r.append(a, ',');
        try r.appendSlice(a, "{\"kind\":\"");
        try r.appendSlice(a, @tagName(kind));
        try r.appendSlice(a, "\",\"name\":");
        try writeString(a, r, name);
        try r.appendSlice(a, ",\"nodes\":[");
        for (nodes, 0..) |n, i| {
            if (i > 0) try r.append(a, ',');
            try writeString(a, r, n);
        }
        try r.appendSlice(a, "],\"loc\":");
        if (loc) |l| try writeString(a, r, l) else try r.appendSlice(a, "null");
        try r.appendSlice(a, ",\"message\":");
        try writeString(a, r, message);
        try r.appendSlice(a, ",\"args\":{}}");
    }

    pub fn count(self: *Output, stat: []const u8, n: i64) !void {
        const slot = try self.stats.getOrPut(self.a, stat);
        slot.value_ptr.* = (if (slot.found_existing) slot.value_ptr.* else 0) + n;
    }

    /// A formatted string in the arena.
    pub fn fmt(self: *Output, comptime f: []const u8, args: anytype) ![]const u8 {
        return std.fmt.allocPrint(self.a, f, args);
    }

    fn document(self: *Output) ![]const u8 {
        const a = self.a;
        var out: Buf = .empty;
        try out.appendSlice(a, "{\"patch\":[");
        try out.appendSlice(a, self.patch.items);
        try out.appendSlice(a, "],\"remarks\":[");
        try out.appendSlice(a, self.remarks.items);
        try out.appendSlice(a, "],\"stats\":{");
        for (self.stats.keys(), self.stats.values(), 0..) |k, v, i| {
            if (i > 0) try out.append(a, ',');
            try writeString(a, &out, k);
            try out.print(a, ":{d}", .{v});
        }
        try out.appendSlice(a, "}}");
        return out.items;
    }
};

// --- positions after removals ----------------------------------------------------------

/// Where item `i` of a list now is, as items are removed and appended (a Fenwick tree):
/// `remove /nodes/k` must name the index the node has *now*, not the one it had.
pub const Ranks = struct {
    a: Allocator,
    tree: []i32,
    alive: std.ArrayList(bool),

    pub fn init(a: Allocator, n: usize) !Ranks {
        var r = Ranks{ .a = a, .tree = &.{}, .alive = .empty };
        try r.alive.appendNTimes(a, true, n);
        try r.rebuild(n + 1);
        return r;
    }

    fn rebuild(self: *Ranks, size: usize) !void {
        self.tree = try self.a.alloc(i32, size);
        @memset(self.tree, 0);
        for (self.alive.items, 0..) |live, i| if (live) self.bump(i, 1);
    }

    fn bump(self: *Ranks, i: usize, d: i32) void {
        var k = i + 1;
        while (k < self.tree.len) : (k += k & (~k + 1)) self.tree[k] += d;
    }

    pub fn len(self: Ranks) usize {
        return self.alive.items.len;
    }

    pub fn isAlive(self: Ranks, i: usize) bool {
        return self.alive.items[i];
    }

    /// The current index of item `i` (how many live items precede it).
    pub fn rank(self: Ranks, i: usize) usize {
        var k = i;
        var sum: i32 = 0;
        while (k > 0) : (k -= k & (~k + 1)) sum += self.tree[k];
        return @intCast(sum);
    }

    pub fn kill(self: *Ranks, i: usize) void {
        if (!self.alive.items[i]) return;
        self.alive.items[i] = false;
        self.bump(i, -1);
    }

    /// A new item at the end (`add /edges/-`); its number.
    pub fn append(self: *Ranks) !usize {
        try self.alive.append(self.a, true);
        const i = self.alive.items.len - 1;
        if (i + 2 > self.tree.len) try self.rebuild(2 * self.tree.len + 2) else self.bump(i, 1);
        return i;
    }
};

// --- pointers, canonical JSON, diffs --------------------------------------------------------

/// An RFC 6901 token: `~` as `~0`, `/` as `~1`.
pub fn escapeToken(a: Allocator, token: []const u8) ![]const u8 {
    if (std.mem.indexOfAny(u8, token, "~/") == null) return token;
    var out: Buf = .empty;
    for (token) |c| switch (c) {
        '~' => try out.appendSlice(a, "~0"),
        '/' => try out.appendSlice(a, "~1"),
        else => try out.append(a, c),
    };
    return out.items;
}

/// The value at `pointer` below `root`, to read or to change in place.
pub fn at(a: Allocator, root: *Value, pointer: []const u8) !?*Value {
    var cur = root;
    var it = std.mem.splitScalar(u8, pointer, '/');
    _ = it.next(); // the empty token before the leading "/"
    while (it.next()) |raw| {
        const token = try std.mem.replaceOwned(u8, a, try std.mem.replaceOwned(u8, a, raw, "~1", "/"), "~0", "~");
        cur = switch (cur.*) {
            .object => |*o| o.getPtr(token) orelse return null,
            .array => |*arr| blk: {
                const i = std.fmt.parseInt(usize, token, 10) catch return null;
                if (i >= arr.items.len) return null;
                break :blk &arr.items[i];
            },
            else => return null,
        };
    }
    return cur;
}

fn lessThan(_: void, x: []const u8, y: []const u8) bool {
    return std.mem.order(u8, x, y) == .lt;
}

/// `v` as aobc hashes it: sorted keys, no spaces (leaving out top-level members in `skip`).
/// Two values give the same text exactly when aobc's canonical bytes are equal.
pub fn writeCanonical(a: Allocator, out: *Buf, v: Value, skip: []const []const u8) !void {
    switch (v) {
        .array => |arr| {
            try out.append(a, '[');
            for (arr.items, 0..) |item, i| {
                if (i > 0) try out.append(a, ',');
                try writeCanonical(a, out, item, &.{});
            }
            try out.append(a, ']');
        },
        .object => |o| {
            var keys: std.ArrayList([]const u8) = .empty;
            outer: for (o.keys()) |k| {
                for (skip) |s| if (std.mem.eql(u8, s, k)) continue :outer;
                try keys.append(a, k);
            }
            std.mem.sort([]const u8, keys.items, {}, lessThan);
            try out.append(a, '{');
            for (keys.items, 0..) |k, i| {
                if (i > 0) try out.append(a, ',');
                try writeString(a, out, k);
                try out.append(a, ':');
                try writeCanonical(a, out, o.get(k).?, &.{});
            }
            try out.append(a, '}');
        },
        else => try writeValue(a, out, v),
    }
}

/// Equal JSON, types included: `1` is not `1.0` (the host writes numbers as Python does).
pub fn strictEqual(x: Value, y: Value) bool {
    return switch (x) {
        .null => y == .null,
        .bool => |b| y == .bool and y.bool == b,
        .number_string => |s| y == .number_string and std.mem.eql(u8, s, y.number_string),
        .string => |s| y == .string and std.mem.eql(u8, s, y.string),
        .array => |arr| y == .array and arr.items.len == y.array.items.len and for (arr.items, y.array.items) |p, q| {
            if (!strictEqual(p, q)) break false;
        } else true,
        .object => |o| y == .object and o.count() == y.object.count() and for (o.keys(), o.values()) |k, v| {
            const w = y.object.get(k) orelse break false;
            if (!strictEqual(v, w)) break false;
        } else true,
        else => false,
    };
}

fn idsOf(a: Allocator, items: []Value) !?[][]const u8 {
    var ids: std.ArrayList([]const u8) = .empty;
    var seen: std.StringHashMapUnmanaged(void) = .empty;
    for (items) |item| {
        const id = string(item, "id") orelse return null;
        if (item != .object) return null;
        if ((try seen.getOrPut(a, id)).found_existing) return null;
        try ids.append(a, id);
    }
    return ids.items;
}

/// The operations turning `x` into `y` at `path`, exactly as aobc's `jsonpatch.diff` makes
/// them (so a plugin that replaces a node's document records what the host's rewriter would).
pub fn diff(out: *Output, x: Value, y: Value, path: []const u8) Allocator.Error!void {
    const a = out.a;
    if (x == .object and y == .object) {
        for (x.object.keys()) |k| {
            if (!y.object.contains(k)) try out.remove(try out.fmt("{s}/{s}", .{ path, try escapeToken(a, k) }));
        }
        for (y.object.keys(), y.object.values()) |k, v| {
            const sub = try out.fmt("{s}/{s}", .{ path, try escapeToken(a, k) });
            if (x.object.get(k)) |old| try diff(out, old, v, sub) else try out.withValue("add", sub, v);
        }
    } else if (x == .array and y == .array) {
        const xi = try idsOf(a, x.array.items);
        const yi = try idsOf(a, y.array.items);
        if (xi != null and yi != null) try diffById(out, x.array.items, y.array.items, path) else try diffArray(out, x.array.items, y.array.items, path);
    } else if (!strictEqual(x, y)) {
        try out.withValue("replace", path, y);
    }
}

fn diffArray(out: *Output, x: []Value, y: []Value, path: []const u8) Allocator.Error!void {
    const shortest = @min(x.len, y.len);
    var start: usize = 0;
    while (start < shortest and strictEqual(x[start], y[start])) start += 1;
    var tail: usize = 0;
    while (tail < shortest - start and strictEqual(x[x.len - 1 - tail], y[y.len - 1 - tail])) tail += 1;
    const mid_x = x.len - start - tail;
    const mid_y = y.len - start - tail;
    for (0..@min(mid_x, mid_y)) |k| try diff(out, x[start + k], y[start + k], try out.fmt("{s}/{d}", .{ path, start + k }));
    var idx = start + mid_x;
    while (idx > start + mid_y) {
        idx -= 1;
        try out.remove(try out.fmt("{s}/{d}", .{ path, idx }));
    }
    // A range whose end is below its start is an overflow in Zig, not an empty range.
    if (mid_y > mid_x) for (start + mid_x..start + mid_y) |i| try out.withValue("add", try out.fmt("{s}/{d}", .{ path, i }), y[i]);
}

fn diffById(out: *Output, x: []Value, y: []Value, path: []const u8) Allocator.Error!void {
    const a = out.a;
    var wanted: std.StringHashMapUnmanaged(void) = .empty;
    for (y) |item| try wanted.put(a, string(item, "id").?, {});
    var cur: std.ArrayList(Value) = .empty;
    try cur.appendSlice(a, x);
    var idx = x.len;
    while (idx > 0) {
        idx -= 1;
        if (!wanted.contains(string(x[idx], "id").?)) {
            try out.remove(try out.fmt("{s}/{d}", .{ path, idx }));
            _ = cur.orderedRemove(idx);
        }
    }
    for (y, 0..) |item, j| {
        const ident = string(item, "id").?;
        var k: ?usize = null;
        for (cur.items[j..], j..) |c, i| if (std.mem.eql(u8, string(c, "id").?, ident)) {
            k = i;
            break;
        };
        const sub = try out.fmt("{s}/{d}", .{ path, j });
        if (k) |found| {
            if (found != j) {
                try out.op("move", sub);
                try out.patch.appendSlice(a, ",\"from\":");
                try writeString(a, &out.patch, try out.fmt("{s}/{d}", .{ path, found }));
                try out.patch.append(a, '}');
                const moved = cur.orderedRemove(found);
                try cur.insert(a, j, moved);
            }
            try diff(out, cur.items[j], item, sub);
        } else {
            try out.withValue("add", sub, item);
            try cur.insert(a, j, item);
        }
    }
}

// --- reads: renaming a name in expressions ---------------------------------------------------

/// A name read in a string: `[pointer, name, start, end]` of `node.refs` (byte offsets).
pub const Ref = struct { path: []const u8, name: []const u8, start: usize, end: usize };

/// Parse `[pointer, name, start, end]` (or `[name, start, end]` for edges and outputs).
pub fn refs(a: Allocator, raw: []Value) ![]Ref {
    var out: std.ArrayList(Ref) = .empty;
    for (raw) |r| {
        const items = switch (r) {
            .array => |x| x.items,
            else => return error.BadRefs,
        };
        const off: usize = if (items.len == 4) 1 else 0;
        if (items.len != 3 + off) return error.BadRefs;
        try out.append(a, .{
            .path = if (off == 1) items[0].string else "",
            .name = items[off].string,
            .start = try std.fmt.parseInt(usize, items[off + 1].number_string, 10),
            .end = try std.fmt.parseInt(usize, items[off + 2].number_string, 10),
        });
    }
    return out.items;
}

pub const Renamed = struct { text: []const u8, refs: []Ref };

/// `text` with every read of `from` (among `rs`, the refs of this one string) made a read
/// of `to`; the refs move with it.
pub fn rename(a: Allocator, text: []const u8, rs: []const Ref, from: []const u8, to: []const u8) !Renamed {
    var buf: Buf = .empty;
    var out: std.ArrayList(Ref) = .empty;
    var pos: usize = 0;
    for (rs) |r| {
        try buf.appendSlice(a, text[pos..r.start]);
        const name = if (std.mem.eql(u8, r.name, from)) to else r.name;
        const start = buf.items.len;
        try buf.appendSlice(a, name);
        try out.append(a, .{ .path = r.path, .name = name, .start = start, .end = buf.items.len });
        pos = r.end;
    }
    try buf.appendSlice(a, text[pos..]);
    return .{ .text = buf.items, .refs = out.items };
}

// --- the ABI -----------------------------------------------------------------------------

fn pack(err: bool, bytes: []const u8) u64 {
    const ptr: u64 = @intFromPtr(bytes.ptr);
    return (@as(u64, @intFromBool(err)) << 63) | (ptr << 32) | @as(u64, bytes.len);
}

fn fail(msg: []const u8) u64 {
    return pack(true, msg);
}

fn call(comptime P: type, ptr: u32, len: u32) u64 {
    var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
    const a = arena.allocator();
    const bytes = @as([*]const u8, @ptrFromInt(ptr))[0..len];
    const doc = std.json.parseFromSliceLeaky(Value, a, bytes, .{ .parse_numbers = false }) catch
        return fail("the input is not JSON");
    const abi = number(doc, "abi") orelse "?";
    if (!std.mem.eql(u8, abi, "1"))
        return fail("this plugin speaks aobc-pass-v1, but the input is for another ABI version");
    const in = Input{
        .arena = a,
        .options = get(doc, "options") orelse .null,
        .graph = get(doc, "graph") orelse .null,
    };
    var out = Output{ .a = a };
    P.run(in, &out) catch |err| return fail(out.failure orelse @errorName(err));
    const text = out.document() catch return fail("out of memory writing the output");
    return pack(false, text);
}

/// Export `abi_version`, `alloc`, `run` and `meta` for the pass `P`.
pub fn exportPass(comptime P: type) void {
    const S = struct {
        fn abiVersion() callconv(.c) i32 {
            return ABI_VERSION;
        }
        fn alloc(len: u32) callconv(.c) u32 {
            const buf = std.heap.wasm_allocator.alloc(u8, @max(len, 1)) catch return 0;
            return @intCast(@intFromPtr(buf.ptr));
        }
        fn run(ptr: u32, len: u32) callconv(.c) u64 {
            return call(P, ptr, len);
        }
        fn meta() callconv(.c) u64 {
            return pack(false, P.manifest);
        }
    };
    @export(&S.abiVersion, .{ .name = "abi_version" });
    @export(&S.alloc, .{ .name = "alloc" });
    @export(&S.run, .{ .name = "run" });
    @export(&S.meta, .{ .name = "meta" });
}
