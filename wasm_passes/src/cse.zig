//! wasm-cse: aobc's `cse` (aobc/passes/cse.py) as a plugin.
//!
//! Merges pure or idempotent nodes that compute the same thing: equal canonical documents
//! (ids aside) and the same incoming edges (sources, labels, guards). The first in
//! declaration order is kept; readers of the duplicate read the kept node, its outgoing edges
//! leave the kept node, cache keys naming it are renamed, and it is removed; then the scan
//! starts again, to a fixpoint. Never merged, each with a `missed` remark: effectful nodes,
//! approvals, agents that are not pure or may patch (and maps or composites running them),
//! nodes whose policy fields differ, a duplicate whose successor takes its predecessors'
//! outputs by id, a pair feeding one node under one label with different guards, and
//! conditions with an "else" edge that branch on different labels.
//!
//! The patch and remarks are exactly the native pass's. Renaming a read uses the byte
//! offsets of name references the host projects (`node.refs`), so this plugin never parses
//! the expression language.

const std = @import("std");
const aobc = @import("aobc_pass.zig");
const Value = aobc.Value;
const Allocator = std.mem.Allocator;
const Ref = aobc.Ref;
const eql = std.mem.eql;

pub const manifest =
    \\{"name": "wasm-cse", "version": "1.0.0",
    \\ "summary": "merge identical pure or idempotent nodes with identical inputs (WebAssembly)",
    \\ "options": {"type": "object", "additionalProperties": false, "properties": {}},
    \\ "reads": ["node.doc", "node.loc", "node.reads", "node.refs",
    \\           "edge.label", "edge.when", "edge.refs", "output.expr", "output.refs"]}
;

comptime {
    aobc.exportPass(@This());
}

/// Fields that change how a call is made, not what it computes: never merged over.
const POLICY_FIELDS = [_][]const u8{ "auth", "headers", "timeout", "retry", "retries", "priority" };
/// What the native loc of a node rebuilt from its document reads (`load_node`'s source).
const REWRITTEN = "<rewrite>#";
const SEP = "\x1f"; // never in canonical JSON text, which escapes control characters

const Node = struct {
    id: []const u8,
    kind: []const u8,
    doc: Value,
    loc: ?[]const u8,
    reads: std.ArrayList([]const u8),
    refs: []Ref,
    full: []const u8, // canonical document without the id
    core: []const u8, // ... and without the policy fields
};

const Edge = struct {
    src: []const u8,
    dst: []const u8,
    label: ?[]const u8,
    when: ?[]const u8,
    refs: []Ref,
};

const Output = struct { name: []const u8, expr: []const u8, refs: []Ref };

const List = std.ArrayList(u32);

const State = struct {
    a: Allocator,
    nodes: []Node,
    node_ranks: aobc.Ranks,
    edges: std.ArrayList(Edge),
    edge_ranks: aobc.Ranks,
    outputs: []Output,
    by_id: std.StringHashMapUnmanaged(u32),
    edges_by_id: std.StringHashMapUnmanaged(List),
};

fn keys(a: Allocator, n: *Node) !void {
    var full: aobc.Buf = .empty;
    try aobc.writeCanonical(a, &full, n.doc, &.{"id"});
    var core: aobc.Buf = .empty;
    try aobc.writeCanonical(a, &core, n.doc, &([_][]const u8{"id"} ++ POLICY_FIELDS));
    n.full = full.items;
    n.core = core.items;
}

fn indexEdge(s: *State, i: u32) !void {
    const e = s.edges.items[i];
    for ([_][]const u8{ e.src, e.dst }, 0..) |id, k| {
        if (k == 1 and eql(u8, e.src, e.dst)) break;
        const slot = try s.edges_by_id.getOrPut(s.a, id);
        if (!slot.found_existing) slot.value_ptr.* = .empty;
        try slot.value_ptr.append(s.a, i);
    }
}

fn load(in: aobc.Input) !?State {
    const a = in.arena;
    const raw = in.nodes();
    var s = State{
        .a = a,
        .nodes = try a.alloc(Node, raw.len),
        .node_ranks = try aobc.Ranks.init(a, raw.len),
        .edges = .empty,
        .edge_ranks = try aobc.Ranks.init(a, in.edges().len),
        .outputs = try a.alloc(Output, in.outputs().len),
        .by_id = .empty,
        .edges_by_id = .empty,
    };
    for (raw, 0..) |v, i| {
        var reads: std.ArrayList([]const u8) = .empty;
        for (aobc.array(v, "reads")) |r| try reads.append(a, r.string);
        s.nodes[i] = .{
            .id = aobc.string(v, "id") orelse return error.NodeWithoutId,
            .kind = aobc.string(v, "type") orelse "",
            .doc = aobc.get(v, "doc") orelse return error.NodeWithoutDoc,
            .loc = aobc.string(v, "loc"),
            .reads = reads,
            .refs = try aobc.refs(a, aobc.array(v, "refs")),
            .full = "",
            .core = "",
        };
        try keys(a, &s.nodes[i]);
        // A repeated id: verify reports it, and nothing here is safe to judge.
        if ((try s.by_id.getOrPut(a, s.nodes[i].id)).found_existing) return null;
        s.by_id.getPtr(s.nodes[i].id).?.* = @intCast(i);
    }
    for (in.edges(), 0..) |v, i| {
        try s.edges.append(a, .{
            .src = aobc.string(v, "from") orelse return error.EdgeWithoutFrom,
            .dst = aobc.string(v, "to") orelse return error.EdgeWithoutTo,
            .label = aobc.string(v, "label"),
            .when = aobc.string(v, "when"),
            .refs = try aobc.refs(a, aobc.array(v, "refs")),
        });
        try indexEdge(&s, @intCast(i));
    }
    for (in.outputs(), 0..) |v, i| {
        s.outputs[i] = .{
            .name = aobc.string(v, "name").?,
            .expr = aobc.string(v, "expr") orelse "",
            .refs = try aobc.refs(a, aobc.array(v, "refs")),
        };
    }
    return s;
}

// --- the graph of the current workflow ---------------------------------------------------------

const Graph = struct {
    preds: []List,
    succs: []List,

    fn of(s: *State, a: Allocator) !Graph {
        const g = Graph{ .preds = try a.alloc(List, s.nodes.len), .succs = try a.alloc(List, s.nodes.len) };
        for (g.preds, g.succs) |*p, *q| {
            p.* = .empty;
            q.* = .empty;
        }
        for (s.edges.items, 0..) |e, i| {
            if (!s.edge_ranks.isAlive(i)) continue;
            const src = liveNode(s, e.src) orelse continue;
            const dst = liveNode(s, e.dst) orelse continue;
            try g.succs[src].append(a, @intCast(i));
            try g.preds[dst].append(a, @intCast(i));
        }
        return g;
    }
};

fn liveNode(s: *State, id: []const u8) ?u32 {
    const i = s.by_id.get(id) orelse return null;
    return if (s.node_ranks.isAlive(i)) i else null;
}

fn hasCycle(s: *State, a: Allocator) !bool {
    const g = try Graph.of(s, a);
    const indeg = try a.alloc(usize, s.nodes.len);
    var ready: List = .empty;
    var total: usize = 0;
    for (s.nodes, 0..) |_, i| {
        if (!s.node_ranks.isAlive(i)) continue;
        total += 1;
        indeg[i] = g.preds[i].items.len;
        if (indeg[i] == 0) try ready.append(a, @intCast(i));
    }
    var seen: usize = 0;
    while (ready.pop()) |i| {
        seen += 1;
        for (g.succs[i].items) |e| {
            const d = liveNode(s, s.edges.items[e].dst).?;
            indeg[d] -= 1;
            if (indeg[d] == 0) try ready.append(a, d);
        }
    }
    return seen != total;
}

// --- why a node may not be merged ----------------------------------------------------------

const Blocked = struct { name: []const u8, why: []const u8 };

fn innerBlocked(a: Allocator, v: Value, top: bool) !?Blocked {
    const kind = aobc.string(v, "type") orelse "";
    const where = if (top) "" else try std.fmt.allocPrint(a, " (it runs {s} \"{s}\")", .{ kind, aobc.string(v, "id") orelse "body" });
    if (eql(u8, kind, "approval"))
        return .{ .name = "approval", .why = try std.fmt.allocPrint(a, "an approval asks people, and each ask is its own decision{s}", .{where}) };
    if (eql(u8, kind, "agent")) {
        if (aobc.boolean(v, "may_patch") orelse false)
            return .{ .name = "agent", .why = try std.fmt.allocPrint(a, "an agent that may patch the workflow acts on it{s}", .{where}) };
        const effect = aobc.string(v, "effect") orelse "";
        if (!eql(u8, effect, "pure"))
            return .{ .name = "agent", .why = try std.fmt.allocPrint(a, "agent is {s}, and an LLM call is not deterministic: two calls may answer differently{s}", .{ effect, where }) };
    }
    if (eql(u8, kind, "map")) {
        if (aobc.get(v, "body")) |body| if (try innerBlocked(a, body, false)) |b| return b;
    } else if (eql(u8, kind, "composite")) {
        if (aobc.get(v, "workflow")) |wf| for (aobc.array(wf, "nodes")) |n| {
            if (try innerBlocked(a, n, false)) |b| return b;
        };
    }
    return null;
}

fn unmergeable(a: Allocator, n: Node) !?Blocked {
    if (eql(u8, aobc.string(n.doc, "effect") orelse "", "effectful")) return .{ .name = "effectful", .why = "node is effectful" };
    return innerBlocked(a, n.doc, true);
}

fn passesPredecessorOutputs(n: Node) bool {
    return (eql(u8, n.kind, "function") and aobc.get(n.doc, "args") == null) or eql(u8, n.kind, "join");
}

fn successorBlocker(s: *State, a: Allocator, g: Graph, dup: u32) !?[]const u8 {
    for (g.succs[dup].items) |e| {
        const dst = s.edges.items[e].dst;
        if (passesPredecessorOutputs(s.nodes[liveNode(s, dst).?]))
            return try std.fmt.allocPrint(a, "its successor \"{s}\" takes its predecessors' outputs by id, so it would see \"{s}\" renamed", .{ dst, s.nodes[dup].id });
    }
    return null;
}

fn edgeKey(a: Allocator, dst: []const u8, label: ?[]const u8) ![]const u8 {
    return if (label) |l| std.fmt.allocPrint(a, "{s}" ++ SEP ++ "{s}", .{ dst, l }) else std.fmt.allocPrint(a, "{s}" ++ SEP ++ SEP, .{dst});
}

fn optEql(x: ?[]const u8, y: ?[]const u8) bool {
    if (x == null or y == null) return x == null and y == null;
    return eql(u8, x.?, y.?);
}

const Moved = struct { edges: []Edge, why: ?[]const u8 };

const Branches = struct { labels: std.StringHashMapUnmanaged(void), has_else: bool };

/// The labels a node's outgoing edges select on (but "else"), and whether one is "else".
fn branches(s: *State, a: Allocator, g: Graph, i: u32) !Branches {
    var out = Branches{ .labels = .empty, .has_else = false };
    for (g.succs[i].items) |e| {
        const label = s.edges.items[e].label orelse continue;
        if (eql(u8, label, "else")) out.has_else = true else try out.labels.put(a, label, {});
    }
    return out;
}

fn sameSet(x: std.StringHashMapUnmanaged(void), y: std.StringHashMapUnmanaged(void)) bool {
    if (x.count() != y.count()) return false;
    var it = x.keyIterator();
    while (it.next()) |k| if (!y.contains(k.*)) return false;
    return true;
}

/// The duplicate's outgoing edges as edges of the kept node (those not already there), or
/// why they cannot be moved.
fn movedEdges(s: *State, a: Allocator, g: Graph, keep: u32, dup: u32) !Moved {
    // An "else" edge is taken when no other label of its source matches, so moving edges
    // with new labels onto a node with an "else" edge (or the reverse) would change it.
    const kb = try branches(s, a, g, keep);
    const db = try branches(s, a, g, dup);
    if ((kb.has_else or db.has_else) and !sameSet(kb.labels, db.labels))
        return .{ .edges = &.{}, .why = "they branch on different labels, which would change their \"else\" branches" };
    var existing: std.StringHashMapUnmanaged(?[]const u8) = .empty;
    for (g.succs[keep].items) |e| {
        const x = s.edges.items[e];
        try existing.put(a, try edgeKey(a, x.dst, x.label), x.when);
    }
    var moved: std.ArrayList(Edge) = .empty;
    for (g.succs[dup].items) |e| {
        const x = s.edges.items[e];
        var when = x.when;
        var refs = x.refs;
        if (x.when) |w| {
            const r = try aobc.rename(a, w, x.refs, s.nodes[dup].id, s.nodes[keep].id);
            when = r.text;
            refs = r.refs;
        }
        const key = try edgeKey(a, x.dst, x.label);
        if (existing.get(key)) |old| {
            if (!optEql(old, when)) return .{ .edges = &.{}, .why = try std.fmt.allocPrint(a, "both feed \"{s}\" under different guards", .{x.dst}) };
            continue;
        }
        try existing.put(a, key, when);
        try moved.append(a, .{ .src = s.nodes[keep].id, .dst = x.dst, .label = x.label, .when = when, .refs = refs });
    }
    return .{ .edges = moved.items, .why = null };
}

// --- one scan ----------------------------------------------------------------------------------

const MissedKind = enum { blocked, policy, differ };
const Missed = struct { kind: MissedKind, name: []const u8 = "", keep: u32, dup: u32, message: []const u8 = "" };
const Merge = struct { keep: u32, dup: u32, moved: []Edge };

fn lessTriple(_: void, x: [3][]const u8, y: [3][]const u8) bool {
    for (0..3) |k| switch (std.mem.order(u8, x[k], y[k])) {
        .lt => return true,
        .gt => return false,
        .eq => {},
    };
    return false;
}

/// The incoming edges as a key: sorted (source, label, guard).
fn control(s: *State, a: Allocator, g: Graph, i: u32) ![]const u8 {
    var triples: std.ArrayList([3][]const u8) = .empty;
    for (g.preds[i].items) |e| {
        const x = s.edges.items[e];
        try triples.append(a, .{ x.src, x.label orelse "", x.when orelse "" });
    }
    std.mem.sort([3][]const u8, triples.items, {}, lessTriple);
    var out: aobc.Buf = .empty;
    for (triples.items) |t| for (t) |part| {
        try aobc.writeString(a, &out, part);
        try out.append(a, ',');
    };
    return out.items;
}

/// The first merge in declaration order, and what was missed before it.
fn scan(s: *State, a: Allocator, missed: *std.ArrayList(Missed)) !?Merge {
    const g = try Graph.of(s, a);
    var by_full: std.StringHashMapUnmanaged(List) = .empty;
    var by_core: std.StringHashMapUnmanaged(u32) = .empty;
    var by_doc: std.StringHashMapUnmanaged(u32) = .empty;
    for (s.nodes, 0..) |n, idx| {
        if (!s.node_ranks.isAlive(idx)) continue;
        const i: u32 = @intCast(idx);
        const ctl = try control(s, a, g, i);
        const full_key = try std.mem.concat(a, u8, &.{ n.full, SEP, ctl });
        const core_key = try std.mem.concat(a, u8, &.{ n.core, SEP, ctl });
        const slot = try by_full.getOrPut(a, full_key);
        if (!slot.found_existing) slot.value_ptr.* = .empty;
        const earlier = slot.value_ptr;
        if (earlier.items.len > 0) {
            var keep = earlier.items[0];
            var blocked = try unmergeable(a, n);
            if (blocked == null) {
                if (try successorBlocker(s, a, g, i)) |why| blocked = .{ .name = "by-id", .why = why };
            }
            if (blocked == null) {
                var why: ?[]const u8 = null;
                for (earlier.items) |k| {
                    keep = k;
                    const m = try movedEdges(s, a, g, k, i);
                    if (m.why == null) return .{ .keep = k, .dup = i, .moved = m.edges };
                    why = m.why;
                }
                blocked = .{ .name = "edges", .why = why orelse "" };
            }
            try missed.append(a, .{ .kind = .blocked, .name = blocked.?.name, .keep = keep, .dup = i, .message = try std.fmt.allocPrint(a, "not CSE'd: {s}", .{blocked.?.why}) });
        } else if (by_core.get(core_key)) |keep| {
            try missed.append(a, .{ .kind = .policy, .keep = keep, .dup = i });
        } else if (by_doc.get(n.full)) |keep| {
            try missed.append(a, .{ .kind = .differ, .keep = keep, .dup = i });
        }
        try earlier.append(a, i);
        if (!by_core.contains(core_key)) try by_core.put(a, core_key, i);
        if (!by_doc.contains(n.full)) try by_doc.put(a, n.full, i);
    }
    return null;
}

// --- merging -----------------------------------------------------------------------------------

fn contains(names: []const []const u8, name: []const u8) bool {
    for (names) |x| if (eql(u8, x, name)) return true;
    return false;
}

fn hasRef(rs: []const Ref, name: []const u8) bool {
    for (rs) |r| if (eql(u8, r.name, name)) return true;
    return false;
}

/// Every read of `dup` in node `i` made a read of `keep`: one `replace` per changed string.
fn renameInNode(s: *State, out: *aobc.Output, i: u32, dup: []const u8, keep: []const u8) !void {
    const a = s.a;
    const n = &s.nodes[i];
    var refs: std.ArrayList(Ref) = .empty;
    var k: usize = 0;
    while (k < n.refs.len) {
        var end = k;
        while (end < n.refs.len and eql(u8, n.refs[end].path, n.refs[k].path)) end += 1;
        const group = n.refs[k..end];
        if (hasRef(group, dup)) {
            const slot = (try aobc.at(a, &n.doc, group[0].path)) orelse return error.BadRefPath;
            const r = try aobc.rename(a, slot.string, group, dup, keep);
            slot.* = .{ .string = r.text };
            try out.withValue("replace", try out.fmt("/nodes/{d}{s}", .{ s.node_ranks.rank(i), group[0].path }), slot.*);
            try refs.appendSlice(a, r.refs);
        } else try refs.appendSlice(a, group);
        k = end;
    }
    n.refs = refs.items;
    var reads: std.ArrayList([]const u8) = .empty;
    for (n.reads.items) |name| if (!eql(u8, name, dup)) try reads.append(a, name);
    if (!contains(reads.items, keep)) try reads.append(a, keep);
    n.reads = reads;
    n.loc = REWRITTEN;
    try keys(a, n);
}

fn renameCacheKey(s: *State, out: *aobc.Output, i: u32, dup: []const u8, keep: []const u8) !void {
    const a = s.a;
    const n = &s.nodes[i];
    const cache = aobc.get(n.doc, "cache") orelse return;
    const key = aobc.get(cache, "key") orelse return;
    if (key != .array) return;
    var hit = false;
    for (key.array.items) |x| {
        if (x != .string) return; // names are strings; anything else is not a key to rename
        if (eql(u8, x.string, dup)) hit = true;
    }
    if (!hit) return;
    var names: std.ArrayList([]const u8) = .empty;
    for (key.array.items) |x| {
        const name = if (eql(u8, x.string, dup)) keep else x.string;
        if (!contains(names.items, name)) try names.append(a, name);
    }
    std.mem.sort([]const u8, names.items, {}, struct {
        fn lt(_: void, x: []const u8, y: []const u8) bool {
            return std.mem.order(u8, x, y) == .lt;
        }
    }.lt);
    var list = std.json.Array.init(a);
    for (names.items) |name| try list.append(.{ .string = name });
    var obj: std.json.ObjectMap = .empty;
    try obj.put(a, "key", .{ .array = list });
    const fresh: Value = .{ .object = obj };
    try aobc.diff(out, cache, fresh, try out.fmt("/nodes/{d}/cache", .{s.node_ranks.rank(i)}));
    try n.doc.object.put(a, "cache", fresh);
    try keys(a, n);
}

fn edgeJson(a: Allocator, e: Edge) ![]const u8 {
    var b: aobc.Buf = .empty;
    try b.appendSlice(a, "{\"from\":");
    try aobc.writeString(a, &b, e.src);
    try b.appendSlice(a, ",\"to\":");
    try aobc.writeString(a, &b, e.dst);
    if (e.label) |l| {
        try b.appendSlice(a, ",\"label\":");
        try aobc.writeString(a, &b, l);
    }
    if (e.when) |w| {
        try b.appendSlice(a, ",\"when\":");
        try aobc.writeString(a, &b, w);
    }
    try b.append(a, '}');
    return b.items;
}

fn merge(s: *State, out: *aobc.Output, m: Merge) !void {
    const a = s.a;
    const keep = s.nodes[m.keep].id;
    const dup = s.nodes[m.dup].id;
    // Reads: nodes, then edge guards, then workflow outputs (Rewriter.rewrite_reads).
    for (s.nodes, 0..) |n, i| {
        if (s.node_ranks.isAlive(i) and contains(n.reads.items, dup)) try renameInNode(s, out, @intCast(i), dup, keep);
    }
    for (s.edges.items, 0..) |*e, i| {
        if (!s.edge_ranks.isAlive(i) or e.when == null or !hasRef(e.refs, dup)) continue;
        const r = try aobc.rename(a, e.when.?, e.refs, dup, keep);
        e.when = r.text;
        e.refs = r.refs;
        try out.withValue("replace", try out.fmt("/edges/{d}/when", .{s.edge_ranks.rank(i)}), .{ .string = r.text });
    }
    for (s.outputs) |*o| {
        if (!hasRef(o.refs, dup)) continue;
        const r = try aobc.rename(a, o.expr, o.refs, dup, keep);
        o.expr = r.text;
        o.refs = r.refs;
        try out.withValue("replace", try out.fmt("/outputs/{s}", .{try aobc.escapeToken(a, o.name)}), .{ .string = r.text });
    }
    for (s.nodes, 0..) |_, i| {
        if (s.node_ranks.isAlive(i)) try renameCacheKey(s, out, @intCast(i), dup, keep);
    }
    for (m.moved) |e| {
        try out.withRawValue("add", "/edges/-", try edgeJson(a, e));
        try s.edges.append(a, e);
        const i = try s.edge_ranks.append();
        try indexEdge(s, @intCast(i));
    }
    // Rewriter.remove_node: the edges touching it, highest index first, then the node.
    if (s.edges_by_id.get(dup)) |edges| {
        var k = edges.items.len;
        while (k > 0) {
            k -= 1;
            const e = edges.items[k];
            if (!s.edge_ranks.isAlive(e)) continue;
            try out.remove(try out.fmt("/edges/{d}", .{s.edge_ranks.rank(e)}));
            s.edge_ranks.kill(e);
        }
    }
    try out.remove(try out.fmt("/nodes/{d}", .{s.node_ranks.rank(m.dup)}));
    s.node_ranks.kill(m.dup);
}

// --- the remarks of what was missed -----------------------------------------------------------

/// Python's `!=` on two JSON values (absent is null): numbers by value, `true == 1`.
fn pyEqual(x: Value, y: Value) bool {
    const nx = numeric(x);
    const ny = numeric(y);
    if (nx != null or ny != null) return nx != null and ny != null and nx.? == ny.?;
    return switch (x) {
        .null => y == .null,
        .string => |t| y == .string and eql(u8, t, y.string),
        .array => |arr| y == .array and arr.items.len == y.array.items.len and for (arr.items, y.array.items) |p, q| {
            if (!pyEqual(p, q)) break false;
        } else true,
        .object => |o| y == .object and o.count() == y.object.count() and for (o.keys(), o.values()) |k, v| {
            const w = y.object.get(k) orelse break false;
            if (!pyEqual(v, w)) break false;
        } else true,
        else => false,
    };
}

fn numeric(v: Value) ?f64 {
    return switch (v) {
        .bool => |b| if (b) 1 else 0,
        .number_string => |t| std.fmt.parseFloat(f64, t) catch null,
        else => null,
    };
}

fn policyDifference(a: Allocator, x: Node, y: Node) ![]const u8 {
    var names: std.ArrayList([]const u8) = .empty;
    for (POLICY_FIELDS) |f| {
        const p = aobc.get(x.doc, f) orelse Value.null;
        const q = aobc.get(y.doc, f) orelse Value.null;
        if (pyEqual(p, q)) continue;
        const name = if (eql(u8, f, "retry")) "retries" else f;
        if (!contains(names.items, name)) try names.append(a, name);
    }
    std.mem.sort([]const u8, names.items, {}, struct {
        fn lt(_: void, p: []const u8, q: []const u8) bool {
            return std.mem.order(u8, p, q) == .lt;
        }
    }.lt);
    return std.mem.join(a, ", ", names.items);
}

/// The approvals upstream of node `i` (`gated_by`), as ids.
fn gates(s: *State, a: Allocator, g: Graph, i: u32) !std.StringHashMapUnmanaged(void) {
    var out: std.StringHashMapUnmanaged(void) = .empty;
    const seen = try a.alloc(bool, s.nodes.len);
    @memset(seen, false);
    var stack: List = .empty;
    try stack.append(a, i);
    while (stack.pop()) |j| {
        for (g.preds[j].items) |e| {
            const src = liveNode(s, s.edges.items[e].src).?;
            if (eql(u8, s.nodes[src].kind, "approval")) try out.put(a, s.nodes[src].id, {});
            if (!seen[src]) {
                seen[src] = true;
                try stack.append(a, src);
            }
        }
    }
    return out;
}

fn differMessage(s: *State, a: Allocator, g: Graph, m: Missed) !struct { name: []const u8, why: []const u8 } {
    const gk = try gates(s, a, g, m.keep);
    const gd = try gates(s, a, g, m.dup);
    var first: ?[]const u8 = null;
    for ([_]struct { x: std.StringHashMapUnmanaged(void), y: std.StringHashMapUnmanaged(void) }{ .{ .x = gk, .y = gd }, .{ .x = gd, .y = gk } }) |pair| {
        var it = pair.x.keyIterator();
        while (it.next()) |id| {
            if (pair.y.contains(id.*)) continue;
            if (first == null or std.mem.order(u8, id.*, first.?) == .lt) first = id.*;
        }
    }
    if (first) |gate| return .{ .name = "gate", .why = try std.fmt.allocPrint(a, "they are on different sides of approval \"{s}\"", .{gate}) };
    if (passesPredecessorOutputs(s.nodes[m.dup])) return .{ .name = "control", .why = "it takes its predecessors' outputs, and their predecessors differ" };
    return .{ .name = "control", .why = "their incoming edges differ, so they may not run in the same circumstances" };
}

pub fn run(in: aobc.Input, out: *aobc.Output) !void {
    var s = (try load(in)) orelse return;
    if (try hasCycle(&s, s.a)) return; // verify reports the cycle
    var scratch = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
    var missed: std.ArrayList(Missed) = .empty;
    while (true) {
        _ = scratch.reset(.retain_capacity);
        missed = .empty;
        const m = (try scan(&s, scratch.allocator(), &missed)) orelse break;
        const dup = s.nodes[m.dup];
        const msg = try out.fmt("merged \"{s}\" into \"{s}\": the same {s} with the same inputs", .{ dup.id, s.nodes[m.keep].id, dup.kind });
        const ids = try s.a.dupe([]const u8, &.{ s.nodes[m.keep].id, dup.id });
        const moved = try s.a.dupe(Edge, m.moved);
        for (moved) |*e| {
            if (e.when) |w| e.when = try s.a.dupe(u8, w);
            e.refs = try s.a.dupe(Ref, e.refs);
            for (e.refs) |*r| r.name = try s.a.dupe(u8, r.name);
        }
        try merge(&s, out, .{ .keep = m.keep, .dup = m.dup, .moved = moved });
        try out.remark(.passed, "merged", ids, msg, dup.loc);
        try out.count("nodes-merged", 1);
    }
    // Only the last scan's misses stand: earlier ones were about a workflow since changed.
    const a = scratch.allocator();
    const g = try Graph.of(&s, a);
    for (missed.items) |m| {
        const keep = s.nodes[m.keep].id;
        const dup = s.nodes[m.dup];
        var name = m.name;
        var message = m.message;
        switch (m.kind) {
            .blocked => {},
            .policy => {
                name = "policy";
                message = try std.fmt.allocPrint(a, "not CSE'd with \"{s}\": different {s}", .{ keep, try policyDifference(a, s.nodes[m.keep], dup) });
            },
            .differ => {
                const d = try differMessage(&s, a, g, m);
                name = d.name;
                message = try std.fmt.allocPrint(a, "not CSE'd with \"{s}\": {s}", .{ keep, d.why });
            },
        }
        try out.remark(.missed, name, &.{ keep, dup.id }, message, dup.loc);
    }
}
