//! wasm-prune-dead: aobc's `prune-dead` (aobc/passes/prune_dead.py) as a plugin.
//!
//! Removes nodes that can never run (a constant condition sends every path around them, a
//! constant false guard blocks them, a join can never get enough inputs), then pure nodes
//! whose output reaches no workflow output and no observable node; remarks why an unread
//! node with an effect is kept. The last branch of a condition under a label stays when the
//! condition also has an "else" edge (with what it needs), as the native pass keeps it.
//! Its patch and remarks are exactly the native pass's: the
//! order of removals, the indices they name and every message are the same.

const std = @import("std");
const aobc = @import("aobc_pass.zig");
const Value = aobc.Value;
const eql = std.mem.eql;

pub const manifest =
    \\{"name": "wasm-prune-dead", "version": "1.0.0",
    \\ "summary": "remove nodes that never run and pure nodes whose output nobody reads (WebAssembly)",
    \\ "options": {"type": "object", "additionalProperties": false, "properties": {
    \\   "aggressive": {"type": "boolean", "default": false,
    \\                  "description": "also remove unread HTTP GET/HEAD/OPTIONS nodes"}}},
    \\ "reads": ["node.method", "node.mode", "node.n", "node.loc", "node.branch",
    \\           "edge.label", "edge.guard", "output.reads"]}
;

comptime {
    aobc.exportPass(@This());
}

const Node = struct {
    id: []const u8,
    kind: []const u8,
    effect: []const u8,
    method: []const u8,
    mode: []const u8,
    n: ?[]const u8,
    branch: ?[]const u8,
    loc: ?[]const u8,
};

const Edge = struct {
    src: []const u8,
    dst: []const u8,
    label: ?[]const u8,
    guard: ?bool,
};

const List = std.ArrayList(u32);
const Ids = std.StringHashMapUnmanaged(List);

/// The workflow as it is now: the original lists with the removed items dead.
const State = struct {
    a: std.mem.Allocator,
    nodes: []Node,
    edges: []Edge,
    node_ranks: aobc.Ranks,
    edge_ranks: aobc.Ranks,
    nodes_by_id: Ids, // id -> node indices with that id
    edges_by_id: Ids, // id -> edges with that id at either end
    output_reads: [][]const u8,
    aggressive: bool,
};

/// `Graph.of`: live nodes by id (the first of a repeated id), and the live edges between
/// them, in declaration order.
const Graph = struct {
    order: List, // node indices, declaration order
    of: std.StringHashMapUnmanaged(u32),
    preds: []List,
    succs: []List,
};

fn push(a: std.mem.Allocator, map: *Ids, key: []const u8, i: u32) !void {
    const slot = try map.getOrPut(a, key);
    if (!slot.found_existing) slot.value_ptr.* = .empty;
    try slot.value_ptr.append(a, i);
}

fn graphOf(s: *State) !Graph {
    const a = s.a;
    var g = Graph{
        .order = .empty,
        .of = .empty,
        .preds = try a.alloc(List, s.nodes.len),
        .succs = try a.alloc(List, s.nodes.len),
    };
    for (g.preds, g.succs) |*p, *q| {
        p.* = .empty;
        q.* = .empty;
    }
    for (s.nodes, 0..) |n, i| {
        if (!s.node_ranks.isAlive(i)) continue;
        const slot = try g.of.getOrPut(a, n.id);
        if (slot.found_existing) continue;
        slot.value_ptr.* = @intCast(i);
        try g.order.append(a, @intCast(i));
    }
    for (s.edges, 0..) |e, i| {
        if (!s.edge_ranks.isAlive(i)) continue;
        const src = g.of.get(e.src) orelse continue;
        const dst = g.of.get(e.dst) orelse continue;
        try g.succs[src].append(a, @intCast(i));
        try g.preds[dst].append(a, @intCast(i));
    }
    return g;
}

/// Kahn's order, stable in declaration order; null when there is a cycle.
fn topoOrder(s: *State, g: *Graph) !?[]u32 {
    const a = s.a;
    const indeg = try a.alloc(usize, s.nodes.len);
    for (g.order.items) |i| indeg[i] = g.preds[i].items.len;
    var ready: List = .empty;
    var k = g.order.items.len;
    while (k > 0) {
        k -= 1;
        const i = g.order.items[k];
        if (indeg[i] == 0) try ready.append(a, i);
    }
    var out: List = .empty;
    var fresh: List = .empty;
    while (ready.pop()) |i| {
        try out.append(a, i);
        fresh.clearRetainingCapacity();
        for (g.succs[i].items) |e| {
            const d = g.of.get(s.edges[e].dst).?;
            indeg[d] -= 1;
            if (indeg[d] == 0) try fresh.append(a, d);
        }
        var j = fresh.items.len;
        while (j > 0) {
            j -= 1;
            try ready.append(a, fresh.items[j]);
        }
    }
    return if (out.items.len == g.order.items.len) out.items else null;
}

fn neverTaken(e: Edge, src: Node) bool {
    if (e.guard) |g| if (!g) return true;
    if (eql(u8, src.kind, "condition")) {
        if (e.label) |label| if (!eql(u8, label, "else")) {
            if (src.branch) |b| return !eql(u8, label, b);
        };
    }
    return false;
}

const Dead = struct { node: u32, why: []const u8 };

/// `never_running`: nodes that can never run, each with the reason, in topological order.
fn neverRunning(s: *State, g: *Graph, order: []u32) ![]Dead {
    const a = s.a;
    const dead = try a.alloc(bool, s.nodes.len);
    @memset(dead, false);
    var out: std.ArrayList(Dead) = .empty;
    var blocked: List = .empty;
    for (order) |i| {
        const incoming = g.preds[i].items;
        if (incoming.len == 0) continue;
        blocked.clearRetainingCapacity();
        for (incoming) |e| {
            const src = g.of.get(s.edges[e].src).?;
            if (dead[src] or neverTaken(s.edges[e], s.nodes[src])) try blocked.append(a, e);
        }
        const node = s.nodes[i];
        var is_dead = blocked.items.len > 0;
        if (eql(u8, node.kind, "join")) {
            var need: usize = 1;
            if (eql(u8, node.mode, "n_of_m")) {
                const n = std.fmt.parseInt(usize, node.n orelse "0", 10) catch 0;
                need = if (n == 0) 1 else n;
            }
            is_dead = incoming.len - blocked.items.len < need;
        }
        if (!is_dead) continue;
        dead[i] = true;
        var why: []const u8 = undefined;
        if (blocked.items.len == 0) {
            why = try std.fmt.allocPrint(a, "it waits for {s} inputs but has only {d}", .{ node.n orelse "None", incoming.len });
        } else {
            const first = s.edges[blocked.items[0]];
            why = if (dead[g.of.get(first.src).?])
                try std.fmt.allocPrint(a, "\"{s}\" never runs", .{first.src})
            else
                try std.fmt.allocPrint(a, "edge \"{s}\" -> \"{s}\" is never taken", .{ first.src, node.id });
        }
        try out.append(a, .{ .node = i, .why = why });
    }
    return out.items;
}

fn isSafe(method: []const u8) bool {
    return eql(u8, method, "GET") or eql(u8, method, "HEAD") or eql(u8, method, "OPTIONS");
}

fn observable(n: Node, aggressive: bool) bool {
    if (eql(u8, n.effect, "pure")) return false;
    if (aggressive and eql(u8, n.kind, "http") and isSafe(n.method)) return false;
    return true;
}

/// `unread`: for each node index, true when its result reaches no output, no observable
/// node and no node of `keep` (only meaningful for nodes in the graph).
fn unread(s: *State, g: *Graph, keep: []const bool) ![]bool {
    const a = s.a;
    const live = try a.alloc(bool, s.nodes.len);
    @memcpy(live, keep);
    var stack: List = .empty;
    for (g.order.items) |i| if (live[i]) try stack.append(a, i);
    for (s.output_reads) |name| {
        if (g.of.get(name)) |i| if (!live[i]) {
            live[i] = true;
            try stack.append(a, i);
        };
    }
    for (g.order.items) |i| {
        if (!live[i] and observable(s.nodes[i], s.aggressive)) {
            live[i] = true;
            try stack.append(a, i);
        }
    }
    while (stack.pop()) |i| {
        for (g.preds[i].items) |e| {
            const src = g.of.get(s.edges[e].src).?;
            if (!live[src]) {
                live[src] = true;
                try stack.append(a, src);
            }
        }
    }
    const out = try a.alloc(bool, s.nodes.len);
    @memset(out, false);
    for (g.order.items) |i| out[i] = !live[i];
    return out;
}

const Anchor = struct { node: u32, cond: u32, label: []const u8 };
const ByLabel = struct { label: []const u8, targets: List };

/// `else_anchors`: nodes of `removing` that must stay so that an "else" edge keeps its
/// meaning, each with (condition, label), in the order the native pass finds them.
fn elseAnchors(s: *State, g: *Graph, removing: []const bool) ![]Anchor {
    const a = s.a;
    var out: std.ArrayList(Anchor) = .empty;
    for (g.order.items) |sid| {
        const node = s.nodes[sid];
        if (removing[sid] or !eql(u8, node.kind, "condition")) continue;
        const edges = g.succs[sid].items;
        // An "else" edge whose target goes too goes with it: then there is nothing to keep.
        var has_else = false;
        for (edges) |e| if (s.edges[e].label) |l| {
            if (eql(u8, l, "else") and !removing[g.of.get(s.edges[e].dst).?]) has_else = true;
        };
        if (!has_else) continue;
        var by_label: std.ArrayList(ByLabel) = .empty;
        for (edges) |e| {
            const edge = s.edges[e];
            const label = edge.label orelse continue;
            if (eql(u8, label, "else")) continue;
            // A label the condition can never select never stops "else"; guards do not count.
            var unguarded = edge;
            unguarded.guard = null;
            if (neverTaken(unguarded, node)) continue;
            const dst = g.of.get(edge.dst).?;
            for (by_label.items) |*b| {
                if (eql(u8, b.label, label)) {
                    try b.targets.append(a, dst);
                    break;
                }
            } else {
                var targets: List = .empty;
                try targets.append(a, dst);
                try by_label.append(a, .{ .label = label, .targets = targets });
            }
        }
        for (by_label.items) |b| {
            const all = for (b.targets.items) |t| {
                if (!removing[t]) break false;
            } else true;
            if (!all) continue;
            const first = b.targets.items[0];
            const known = for (out.items) |x| {
                if (x.node == first) break true;
            } else false;
            if (!known) try out.append(a, .{ .node = first, .cond = sid, .label = b.label });
        }
    }
    return out.items;
}

fn keptAnchors(s: *State, out: *aobc.Output, anchors: []const Anchor) !void {
    for (anchors) |x| {
        const n = s.nodes[x.node];
        const cond = s.nodes[x.cond].id;
        const msg = try out.fmt(
            "kept \"{s}\": it is the only \"{s}\" branch of \"{s}\", whose \"else\" branch would otherwise be taken when \"{s}\" is {s}",
            .{ n.id, x.label, cond, cond, x.label },
        );
        try out.remark(.missed, "kept-branch", &.{n.id}, msg, n.loc);
    }
}

/// `Rewriter.remove_node`: the edges touching it (highest index first), then the node.
fn removeNode(s: *State, out: *aobc.Output, id: []const u8) !void {
    if (s.edges_by_id.get(id)) |edges| {
        var k = edges.items.len;
        while (k > 0) {
            k -= 1;
            const e = edges.items[k];
            if (!s.edge_ranks.isAlive(e)) continue;
            try out.remove(try out.fmt("/edges/{d}", .{s.edge_ranks.rank(e)}));
            s.edge_ranks.kill(e);
        }
    }
    for (s.nodes_by_id.get(id).?.items) |i| {
        if (!s.node_ranks.isAlive(i)) continue;
        try out.remove(try out.fmt("/nodes/{d}", .{s.node_ranks.rank(i)}));
        s.node_ranks.kill(i);
        return;
    }
}

fn load(in: aobc.Input) !State {
    const a = in.arena;
    const raw_nodes = in.nodes();
    const raw_edges = in.edges();
    var s = State{
        .a = a,
        .nodes = try a.alloc(Node, raw_nodes.len),
        .edges = try a.alloc(Edge, raw_edges.len),
        .node_ranks = try aobc.Ranks.init(a, raw_nodes.len),
        .edge_ranks = try aobc.Ranks.init(a, raw_edges.len),
        .nodes_by_id = .empty,
        .edges_by_id = .empty,
        .output_reads = &.{},
        .aggressive = in.flag("aggressive"),
    };
    for (raw_nodes, 0..) |v, i| {
        s.nodes[i] = .{
            .id = aobc.string(v, "id") orelse return error.NodeWithoutId,
            .kind = aobc.string(v, "type") orelse "",
            .effect = aobc.string(v, "effect") orelse "",
            .method = aobc.string(v, "method") orelse "",
            .mode = aobc.string(v, "mode") orelse "all",
            .n = aobc.number(v, "n"),
            .branch = aobc.string(v, "branch"),
            .loc = aobc.string(v, "loc"),
        };
        try push(a, &s.nodes_by_id, s.nodes[i].id, @intCast(i));
    }
    for (raw_edges, 0..) |v, i| {
        const e = Edge{
            .src = aobc.string(v, "from") orelse return error.EdgeWithoutFrom,
            .dst = aobc.string(v, "to") orelse return error.EdgeWithoutTo,
            .label = aobc.string(v, "label"),
            .guard = aobc.boolean(v, "guard"),
        };
        s.edges[i] = e;
        try push(a, &s.edges_by_id, e.src, @intCast(i));
        if (!eql(u8, e.src, e.dst)) try push(a, &s.edges_by_id, e.dst, @intCast(i));
    }
    var reads: std.ArrayList([]const u8) = .empty;
    for (in.outputs()) |o| {
        for (aobc.array(o, "reads")) |r| switch (r) {
            .string => |name| try reads.append(a, name),
            else => {},
        };
    }
    s.output_reads = reads.items;
    return s;
}

pub fn run(in: aobc.Input, out: *aobc.Output) !void {
    var s = try load(in);
    var g = try graphOf(&s);
    const order = try topoOrder(&s, &g) orelse return; // verify reports the cycle
    const dead_list = try neverRunning(&s, &g, order);
    const dead = try s.a.alloc(bool, s.nodes.len);
    @memset(dead, false);
    for (dead_list) |d| dead[d.node] = true;
    // An anchor stays, and so does every never-running node that keeps it from running.
    const anchors = try elseAnchors(&s, &g, dead);
    const keep = try s.a.alloc(bool, s.nodes.len);
    @memset(keep, false);
    var stack: List = .empty;
    for (anchors) |x| if (!keep[x.node]) {
        keep[x.node] = true;
        try stack.append(s.a, x.node);
    };
    while (stack.pop()) |i| {
        for (g.preds[i].items) |e| {
            const src = g.of.get(s.edges[e].src).?;
            if (dead[src] and !keep[src]) {
                keep[src] = true;
                try stack.append(s.a, src);
            }
        }
    }
    try keptAnchors(&s, out, anchors);
    for (dead_list) |d| {
        if (keep[d.node]) continue;
        const node = s.nodes[d.node];
        try removeNode(&s, out, node.id);
        const msg = try out.fmt("removed \"{s}\": it can never run ({s})", .{ node.id, d.why });
        try out.remark(.passed, "unreachable", &.{node.id}, msg, node.loc);
        try out.count("unreachable-removed", 1);
    }
    g = try graphOf(&s);
    // A kept unread node keeps what it reads, which may free other anchors: to a fixpoint.
    const anchored = try s.a.alloc(bool, s.nodes.len);
    @memset(anchored, false);
    var doomed = try unread(&s, &g, anchored);
    while (true) {
        const more = try elseAnchors(&s, &g, doomed);
        if (more.len == 0) break;
        for (more) |x| anchored[x.node] = true;
        try keptAnchors(&s, out, more);
        doomed = try unread(&s, &g, anchored);
    }
    var ids: std.ArrayList(u32) = .empty;
    for (s.nodes, 0..) |n, i| {
        if (!s.node_ranks.isAlive(i)) continue;
        if (doomed[g.of.get(n.id).?]) try ids.append(s.a, @intCast(i));
    }
    for (ids.items) |i| {
        const node = s.nodes[i];
        try removeNode(&s, out, node.id);
        const msg = try out.fmt("removed \"{s}\": its output reaches no output or effect", .{node.id});
        try out.remark(.passed, "unread", &.{node.id}, msg, node.loc);
        try out.count("unread-removed", 1);
    }
    try keptEffects(&s, out, anchored);
}

/// A `missed` remark for each node kept only for its effect.
fn keptEffects(s: *State, out: *aobc.Output, anchored: []const bool) !void {
    var g = try graphOf(s);
    const dead = try unread(s, &g, anchored);
    var read: std.StringHashMapUnmanaged(void) = .empty;
    for (s.output_reads) |name| try read.put(s.a, name, {});
    for (s.nodes, 0..) |n, i| {
        if (!s.node_ranks.isAlive(i)) continue;
        if (read.contains(n.id)) continue;
        const first = g.of.get(n.id).?;
        var feeds_live = false;
        for (g.succs[first].items) |e| {
            const dst = g.of.get(s.edges[e].dst).?;
            if (!dead[dst]) feeds_live = true;
        }
        if (feeds_live or !observable(n, s.aggressive)) continue;
        const hint = if (eql(u8, n.kind, "http") and isSafe(n.method))
            "; prune-dead{aggressive=true} removes unread safe requests"
        else
            "";
        const msg = try out.fmt(
            "kept \"{s}\": nothing reads its output, but it is {s} and its effect is observable{s}",
            .{ n.id, n.effect, hint },
        );
        try out.remark(.missed, "kept-effect", &.{n.id}, msg, n.loc);
    }
}
