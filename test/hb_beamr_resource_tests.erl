%%% @doc The resource model (docs/reliability.md, "Resource model"): what a module can make
%%% the host allocate through its memories and tables is bounded by `memory_limit' (a
%%% default when none is given), tables the OS cannot grant are refused rather than abort
%%% the VM, and a module can neither import hb_beamr's own functions nor declare more
%%% imports or exports than the documented bounds (issue 19, defects 1, 2, 14, 16 and 18).
-module(hb_beamr_resource_tests).

-include_lib("eunit/include/eunit.hrl").

-export([start_result/2, start_and_call/1]).

%% prepare::DEFAULT_MEMORY_LIMIT: a full 32-bit memory and 8 Mi table entries.
-define(DEFAULT_LIMIT, ((4 bsl 30) + (64 bsl 20))).
-define(MAX_EXPORTS, 10000).

%% 20 tables of `Entries' entries of `Type' (funcref or externref) each.
huge_tables(Entries, Type) ->
    Table = io_lib:format(" (table ~b ~s)", [Entries, Type]),
    iolist_to_binary(["(module", lists:duplicate(20, Table), ")"]).

%% 20 tables of 2^27 entries: 20 GiB of table entries at 8 bytes each; funcref tables that
%% cannot grow (their maximum is wasmer's cap) take 32 more per entry in the instance.
huge_tables_exceed_the_default_limit_test() ->
    ?assertEqual({error, {memory_limit, 20 bsl 30, ?DEFAULT_LIMIT}},
                 hb_beamr:start(huge_tables(1 bsl 27, externref))),
    ?assertEqual({error, {memory_limit, 100 bsl 30, ?DEFAULT_LIMIT}},
                 hb_beamr:start(huge_tables(1 bsl 27, funcref))),
    ?assertEqual({error, {memory_limit, 20 bsl 30, 1 bsl 30}},
                 hb_beamr:start(huge_tables(1 bsl 27, externref), #{memory_limit => 1 bsl 30})).

%% Allowed by a large memory_limit, the tables are more than the OS grants the child VM
%% (wasmer allocated them infallibly, and the VM aborted): start says so, and the VM and
%% its instances live on.
huge_tables_the_os_refuses_test_() ->
    {timeout, 120, fun() ->
        {Peer, Node} = hb_beamr_test_util:address_limited_peer(12 bsl 30),
        Start = fun(Wasm) -> erpc:call(Node, ?MODULE, start_result, [Wasm, #{memory_limit => 32 bsl 30}]) end,
        ?assertEqual({error, {resource_limit, memory}}, Start(huge_tables(1 bsl 27, externref))),
        ?assertEqual({error, {resource_limit, memory}}, Start(huge_tables(1 bsl 27 - 1, funcref))),
        ?assertEqual({ok, [3]}, erpc:call(Node, ?MODULE, start_and_call, [hb_beamr_test_util:fixture("core.wat")])),
        peer:stop(Peer)
    end}.

%% @private What start/2 returns, an instance stopped again.
-spec start_result(binary(), map()) -> term().
start_result(Wasm, Opts) ->
    case hb_beamr:start(Wasm, Opts) of
        {ok, I, _, _} -> hb_beamr:stop(I), started;
        Refused -> Refused
    end.

%% @private Starts core.wat and calls add(1, 2).
-spec start_and_call(binary()) -> term().
start_and_call(Wasm) ->
    {ok, I, _, _} = hb_beamr:start(Wasm),
    Result = hb_beamr:call(I, "add", [1, 2]),
    hb_beamr:stop(I),
    Result.

%% With 128 KiB, no memory may grow to 1 GiB and no table to 100 M entries (+1.8 GB RSS
%% before): every memory's and table's maximum fits the limit.
no_memory_or_table_grows_past_the_limit_test() ->
    I = start_grower(#{memory_limit => 128 bsl 10}),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_memory1", [(1 bsl 30) div 65536 - 1])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_table", [100000000])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_table", [16#FFFFFFFA])),
    hb_beamr:stop(I).

%% ... and together they stay within it: here memory 0 and 1 (a page each) use it all.
%% (The interruption pass guards each memory.grow and table.grow with the instance's total.)
memories_and_tables_share_the_limit_test() ->
    I = start_grower(#{memory_limit => 128 bsl 10}),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_memory1", [1])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_table", [1])),
    hb_beamr:stop(I),
    Roomy = start_grower(#{memory_limit => 128 bsl 10 + 65536 + 8}),
    ?assertEqual({ok, [0]}, hb_beamr:call(Roomy, "grow_table", [1])),
    ?assertEqual({ok, [1]}, hb_beamr:call(Roomy, "grow_memory1", [1])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(Roomy, "grow_table", [1])),
    hb_beamr:stop(Roomy).

%% Two memories of a page each and an empty table.
start_grower(Opts) ->
    Wat = <<"(module (memory 1) (memory $m1 1) (table $t 0 funcref)
               (func (export \"grow_memory1\") (param i32) (result i32) (memory.grow $m1 (local.get 0)))
               (func (export \"grow_table\") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))">>,
    {ok, I, _, _} = hb_beamr:start(Wat, Opts#{wamr_compat => false}),
    I.

%% The limit counts table entries at start too: 8 bytes each, besides the memories.
the_initial_footprint_counts_tables_test() ->
    Wat = <<"(module (memory 1) (table 10 funcref))">>,
    ?assertMatch({ok, _, _, _}, hb_beamr:start(Wat, #{memory_limit => 65536 + 80})),
    ?assertEqual({error, {memory_limit, 65536 + 80, 65536 + 79}}, hb_beamr:start(Wat, #{memory_limit => 65536 + 79})).

%% hb_beamr provides no memories or tables: a module that imports one never links.
imported_memories_and_tables_are_not_provided_test() ->
    [?assertMatch({error, {invalid_module, _}}, hb_beamr:start(Wat))
     || Wat <- [<<"(module (import \"env\" \"t\" (table 1 funcref)))">>,
                <<"(module (import \"env\" \"m\" (memory 1)))">>]].

%% A module calling hb_beamr's interruption check itself chose its fuel (i64::MIN gave a
%% gas_used of 9223372036854775810).
importing_hb_beamrs_own_functions_is_refused_test() ->
    Wat = <<"(module (import \"__hb_beamr\" \"check\" (func $c (param i64) (result i64)))
               (func (export \"f\") (result i64) (call $c (i64.const -9223372036854775808))))">>,
    {error, {invalid_module, Why}} = hb_beamr:start(Wat),
    ?assertNotEqual(nomatch, string:find(Why, "__hb_beamr is reserved")).

%% 100,000 exports of one function cost ~70 MB and a quarter of a second per start.
exports_beyond_the_bound_are_refused_test_() ->
    {timeout, 60, fun() ->
        {error, {invalid_module, Why}} = hb_beamr:start(exporting(100001)),
        ?assertNotEqual(nomatch, string:find(Why, "100001 exports")),
        {ok, I, _, Exports} = hb_beamr:start(exporting(?MAX_EXPORTS)),
        ?assertEqual(?MAX_EXPORTS, length(Exports)),
        ?assertEqual({ok, [7]}, hb_beamr:call(I, "f9999", [])),
        hb_beamr:stop(I)
    end}.

%% A module exporting its one function `N' times, as f0, f1, ...
exporting(N) ->
    Exports = [io_lib:format("(export \"f~b\" (func 0))", [K]) || K <- lists:seq(0, N - 1)],
    iolist_to_binary(["(module (func (result i32) i32.const 7) ", Exports, ")"]).
