%%% @doc Full snapshots (hb_beamr:snapshot/1, restore/2, start option `restore'): the
%%% whole state (memory, globals that are not exported, every table, funcref globals) comes
%%% back, in the same instance, in a fresh one, and on another node; bad snapshots are
%%% refused without touching the instance.
-module(hb_beamr_snapshot_tests).

-include_lib("eunit/include/eunit.hrl").

-define(AOS, "fixtures/hyperbeam/aos-2-pure-xs.wasm").

wat() -> hb_beamr_test_util:fixture("snapshot.wat").

start() ->
    {ok, I, _, _} = hb_beamr:start(wat()),
    I.

%% Everything the fixture's state holds, as seen from wasm.
observe(I) ->
    {ok, [Counter]} = hb_beamr:call(I, "counter", []),
    {ok, [Sp]} = hb_beamr:call(I, "sp", []),
    {ok, [Ratio]} = hb_beamr:call(I, "ratio", []),
    {ok, [TableSize]} = hb_beamr:call(I, "table_size", []),
    Slots = [hb_beamr:call(I, "call_slot", [S]) || S <- lists:seq(0, 2)],
    {ok, Memory} = hb_beamr_io:read(I, 0, 128),
    {ok, Size} = hb_beamr_io:size(I),
    #{counter => Counter, sp => Sp, ratio => Ratio, table_size => TableSize,
      slots => Slots, memory => Memory, size => Size}.

%% Changes every kind of state the fixture has.
mutate(I, N) ->
    [{ok, _} = hb_beamr:call(I, "bump", []) || _ <- lists:seq(1, N)],
    {ok, []} = hb_beamr:call(I, "set_sp", [4096 + N]),
    {ok, []} = hb_beamr:call(I, "set_ratio", [N * 1.25]),
    ok = hb_beamr_io:write(I, 100, <<N, "state">>).

restore_in_place_test() ->
    I = start(),
    mutate(I, 3),
    {ok, []} = hb_beamr:call(I, "copy_slot", [1, 2]),
    {ok, [4]} = hb_beamr:call(I, "grow_table", [2]),
    Before = observe(I),
    ?assertMatch(#{counter := 3, sp := 4099, ratio := 3.75, table_size := 6}, Before),
    ?assertMatch(#{slots := [{ok, [1]}, {ok, [2]}, {ok, [2]}]}, Before),
    {ok, Snap} = hb_beamr:snapshot(I),
    mutate(I, 9),
    {ok, []} = hb_beamr:call(I, "clear_slot", [0]),
    {ok, [6]} = hb_beamr:call(I, "grow_table", [1]),
    %% (WAMR's layout gives the module a second page.)
    {ok, [2]} = hb_beamr:call(I, "grow", [2]),
    ?assertNotEqual(Before, observe(I)),
    ?assertEqual(ok, hb_beamr:restore(I, Snap)),
    %% Memory and tables cannot shrink: what lies beyond the snapshot is zero / null.
    After = observe(I),
    ?assertEqual(Before#{size := 4 * 65536, table_size := 7}, After),
    ?assertEqual({ok, <<0:(2 * 65536 * 8)>>}, hb_beamr_io:read(I, 2 * 65536, 2 * 65536)),
    ?assertMatch({error, {trap, uninitialized_element, _}}, hb_beamr:call(I, "call_slot", [6])),
    %% And the instance goes on from there.
    ?assertEqual({ok, [4]}, hb_beamr:call(I, "bump", [])),
    hb_beamr:stop(I).

restore_into_a_fresh_instance_test() ->
    I = start(),
    mutate(I, 5),
    {ok, []} = hb_beamr:call(I, "copy_slot", [0, 2]),
    {ok, [2]} = hb_beamr:call(I, "grow", [1]),
    {ok, Snap} = hb_beamr:snapshot(I),
    {ok, Fresh, _, _} = hb_beamr:start(wat(), #{restore => Snap}),
    ?assertEqual(observe(I), observe(Fresh)),
    Other = start(),
    ?assertEqual(ok, hb_beamr:restore(Other, Snap)),
    ?assertEqual(observe(I), observe(Other)),
    ?assertEqual({ok, Snap}, hb_beamr:snapshot(Fresh)),
    [hb_beamr:stop(X) || X <- [I, Fresh, Other]].

funcref_globals_map_to_the_new_instance_test() ->
    I = start(),
    {ok, []} = hb_beamr:call(I, "keep_slot", [1]),
    {ok, Snap} = hb_beamr:snapshot(I),
    {ok, Fresh, _, _} = hb_beamr:start(wat(), #{restore => Snap}),
    ?assertEqual({ok, [2]}, hb_beamr:call(Fresh, "call_kept", [])),
    [hb_beamr:stop(X) || X <- [I, Fresh]].

%% A function that only a declarative segment names, put into table 0 by `table.set', is
%% captured (preparation exports it for the host) and restored into a fresh instance. (The
%% fixture's header still calls it unrepresentable, as it was: its bytes cannot change, a
%% committed version-1 snapshot is bound to them.)
table_set_entry_is_captured_test() ->
    I = start(),
    {ok, []} = hb_beamr:call(I, "hide", []),
    {ok, Hidden} = hb_beamr:call(I, "call_slot", [3]),
    {ok, Snap} = hb_beamr:snapshot(I),
    {ok, Fresh, _, Exports} = hb_beamr:start(wat(), #{restore => Snap}),
    ?assertEqual({ok, Hidden}, hb_beamr:call(Fresh, "call_slot", [3])),
    %% The export preparation added for it stays hidden.
    ?assertEqual([], [Name || {func, Name, _} <- Exports, lists:prefix("__hb_beamr", Name)]),
    [hb_beamr:stop(X) || X <- [I, Fresh]].

%% Every table (issue 22), in test/fixtures/tables.wat: funcref tables 0, 1 and 2 and an
%% externref table, which stays null.
tables_wat() -> hb_beamr_test_util:fixture("tables.wat").

%% What a call through each entry of tables 0, 1 (its first five) and 2 gives (the
%% function's number, or the trap: a null entry, or past the table's end), every table's
%% size, how many of the externref table's first two entries are null, a global and memory.
tables_state(I) ->
    Calls = [[table_entry(I, T, S) || S <- lists:seq(0, N - 1)] || {T, N} <- [{0, 4}, {1, 5}, {2, 2}]],
    {ok, Sizes} = hb_beamr:call(I, "sizes", []),
    {ok, [Nulls]} = hb_beamr:call(I, "extern_nulls", []),
    {ok, [G]} = hb_beamr:call(I, "g", []),
    {ok, Memory} = hb_beamr:serialize(I),
    #{calls => Calls, sizes => Sizes, extern_nulls => Nulls, g => G, memory => erlang:md5(Memory)}.

table_entry(I, T, S) ->
    case hb_beamr:call(I, "call", [T, S]) of
        {ok, [N]} -> N;
        {error, {trap, uninitialized_element, _}} -> null;
        {error, {trap, table_out_of_bounds, _}} -> out
    end.

every_table_is_captured_test() ->
    {ok, I, _, _} = hb_beamr:start(tables_wat()),
    {ok, []} = hb_beamr:call(I, "fill", []),
    Filled = tables_state(I),
    ?assertMatch(#{calls := [[1, 2, null, null], [40, 3, 20, out, out], [10, 40]],
                   sizes := [4, 3, 2, 2], extern_nulls := 2, g := 1}, Filled),
    {ok, Snap} = hb_beamr:snapshot(I),
    {ok, []} = hb_beamr:call(I, "scramble", []),
    {ok, [2]} = hb_beamr:call(I, "grow_extern", []),
    ?assertMatch(#{calls := [[null, 3, null, 10], [null, 1, 20, 2, 2], [2, null]],
                   sizes := [4, 5, 2, 3], g := 2}, tables_state(I)),
    ?assertEqual(ok, hb_beamr:restore(I, Snap)),
    %% Tables cannot shrink: table 1 and the externref table keep their size, null past
    %% the snapshot's.
    ?assertEqual(Filled#{calls := [[1, 2, null, null], [40, 3, 20, null, null], [10, 40]],
                         sizes := [4, 5, 2, 3]}, tables_state(I)),
    %% A fresh instance, whose tables hold only the active segment's entry.
    {ok, Fresh, _, _} = hb_beamr:start(tables_wat(), #{restore => Snap}),
    ?assertEqual(Filled, tables_state(Fresh)),
    ?assertEqual({ok, Snap}, hb_beamr:snapshot(Fresh)),
    %% The tables' exports preparation added stay hidden.
    {ok, _, _, Exports} = hb_beamr:start(tables_wat()),
    ?assertEqual([], [E || E <- Exports, lists:prefix("__hb_beamr", element(2, E))]),
    [hb_beamr:stop(X) || X <- [I, Fresh]].

%% Deltas hold every table whole.
every_table_is_in_deltas_test() ->
    {ok, I, _, _} = hb_beamr:start(tables_wat()),
    {ok, Full} = hb_beamr:snapshot(I, #{incremental => true}),
    {ok, []} = hb_beamr:call(I, "scramble", []),
    {ok, []} = hb_beamr:call(I, "set", [2, 0, 40]),
    {ok, Delta} = hb_beamr:snapshot(I, #{incremental => true}),
    ?assertMatch({ok, #{kind := delta, sequence := 1}}, hb_beamr:snapshot_info(Delta)),
    {ok, J, _, _} = hb_beamr:start(tables_wat(), #{restore => [Full, Delta]}),
    ?assertEqual(tables_state(I), tables_state(J)),
    [hb_beamr:stop(X) || X <- [I, J]].

%% Version-2 snapshots (written by the build before this format, committed with the
%% fixture) hold table 0 only: restoring them sets table 0 and leaves the other tables as
%% they are; a version-3 delta taken after them follows them, with every table.
version_2_snapshots_restore_table_0_test() ->
    Full = zlib:uncompress(hb_beamr_test_util:fixture("tables_v2_full.bin.z")),
    Delta = zlib:uncompress(hb_beamr_test_util:fixture("tables_v2_delta.bin.z")),
    ?assertEqual(<<2:32/little>>, binary:part(Full, 8, 4)),
    {ok, #{id := FullId}} = hb_beamr:snapshot_info(Full),
    ?assertMatch({ok, #{kind := delta, parent := FullId, sequence := 1}},
                 hb_beamr:snapshot_info(Delta)),
    {ok, I, _, _} = hb_beamr:start(tables_wat()),
    {ok, []} = hb_beamr:call(I, "scramble", []),
    Scrambled = [[null, 3, null, 10], [null, 1, null, 2, 2], [2, null]],
    ?assertMatch(#{calls := Scrambled}, tables_state(I)),
    ?assertEqual(ok, hb_beamr:restore(I, Full)),
    ?assertMatch(#{calls := [[1, 2, null, null] | Others], g := 1}
                   when Others =:= tl(Scrambled), tables_state(I)),
    ?assertEqual({ok, <<77>>}, hb_beamr_io:read(I, 10, 1)),
    ?assertEqual(ok, hb_beamr:restore(I, [Full, Delta])),
    ?assertMatch(#{calls := [[1, 2, 20, null] | Others]} when Others =:= tl(Scrambled),
                 tables_state(I)),
    ?assertEqual({ok, <<88>>}, hb_beamr_io:read(I, 5000, 1)),
    %% In a fresh instance the other tables are as instantiation left them.
    {ok, Fresh, _, _} = hb_beamr:start(tables_wat(), #{restore => [Full, Delta]}),
    ?assertMatch(#{calls := [[1, 2, 20, null], [40, null, null, out, out], [null, null]],
                   sizes := [4, 3, 2, 2]}, tables_state(Fresh)),
    %% The next delta is version 3 and follows the chain.
    {ok, []} = hb_beamr:call(I, "set", [2, 1, 3]),
    {ok, D3} = hb_beamr:snapshot(I, #{incremental => true}),
    {ok, #{id := DeltaId}} = hb_beamr:snapshot_info(Delta),
    ?assertMatch({ok, #{kind := delta, parent := DeltaId, sequence := 2}},
                 hb_beamr:snapshot_info(D3)),
    {ok, J, _, _} = hb_beamr:start(tables_wat(), #{restore => [Full, Delta, D3]}),
    ?assertEqual(tables_state(I), tables_state(J)),
    [hb_beamr:stop(X) || X <- [I, Fresh, J]].

%% The fuel countdown changes with every call; it is not state.
fuel_is_not_part_of_the_state_test() ->
    I = start(),
    {ok, Snap1} = hb_beamr:snapshot(I),
    {ok, [1007]} = hb_beamr:call(I, "pure", []),
    {ok, [1007], _} = hb_beamr:call(I, "pure", [], fun hb_beamr:stub/3, #{}, #{gas => 100000}),
    ?assertEqual({ok, Snap1}, hb_beamr:snapshot(I)),
    hb_beamr:stop(I).

bad_snapshots_leave_the_instance_untouched_test() ->
    I = start(),
    mutate(I, 2),
    {ok, Snap} = hb_beamr:snapshot(I),
    mutate(I, 4),
    Before = observe(I),
    Size = byte_size(Snap),
    Truncations = [0, 1, 8, 63, 64, 100, Size div 2, Size - 1],
    [?assertMatch({error, {invalid_snapshot, _}}, hb_beamr:restore(I, binary:part(Snap, 0, Len)))
     || Len <- Truncations],
    Flips = [0, 9, 17, 30, 40, 70, 90, Size - 70000, Size - 1],
    [?assertMatch({error, {invalid_snapshot, _}}, hb_beamr:restore(I, flip(Snap, At))) || At <- Flips],
    ?assertMatch({error, {invalid_snapshot, _}}, hb_beamr:restore(I, <<Snap/binary, 0>>)),
    %% serialize/1's raw memory is not a snapshot.
    {ok, Raw} = hb_beamr:serialize(I),
    ?assertMatch({error, {invalid_snapshot, _}}, hb_beamr:restore(I, Raw)),
    ?assertEqual(Before, observe(I)),
    ?assertEqual({error, {badarg, {snapshot, nope}}}, hb_beamr:restore(I, nope)),
    ?assertEqual({error, {badarg, {options, {restore, 42}}}}, hb_beamr:start(wat(), #{restore => 42})),
    ?assertMatch({error, {invalid_snapshot, _}}, hb_beamr:start(wat(), #{restore => <<"junk">>})),
    hb_beamr:stop(I).

flip(Bin, At) ->
    <<Pre:At/binary, Byte, Post/binary>> = Bin,
    <<Pre/binary, (Byte bxor 16#10), Post/binary>>.

another_module_or_layout_is_a_mismatch_test() ->
    I = start(),
    {ok, Snap} = hb_beamr:snapshot(I),
    {ok, Core, _, _} = hb_beamr:start(hb_beamr_test_util:fixture("core.wat")),
    {ok, CoreBefore} = hb_beamr:serialize(Core),
    ?assertMatch({error, {snapshot_mismatch, _}}, hb_beamr:restore(Core, Snap)),
    ?assertEqual({ok, CoreBefore}, hb_beamr:serialize(Core)),
    {ok, NoCompat, _, _} = hb_beamr:start(wat(), #{wamr_compat => false}),
    ?assertMatch({error, {snapshot_mismatch, _}}, hb_beamr:restore(NoCompat, Snap)),
    %% The limit is no part of the state: a snapshot restores under another one it fits.
    {ok, Limited, _, _} = hb_beamr:start(wat(), #{restore => Snap, memory_limit => 64 * 65536}),
    ?assertEqual(hb_beamr:serialize(I), hb_beamr:serialize(Limited)),
    [hb_beamr:stop(X) || X <- [I, Core, NoCompat, Limited]].

not_from_inside_a_call_test() ->
    {ok, I, _, _} = hb_beamr:start(hb_beamr_test_util:fixture("core.wat")),
    {ok, Snap} = hb_beamr:snapshot(I),
    Fun = fun(_, #{args := [A, B]}, _) ->
                  {ok, [A + B], {hb_beamr:snapshot(I), hb_beamr:restore(I, Snap)}}
          end,
    ?assertEqual({ok, [5], {{error, call_in_progress}, {error, call_in_progress}}},
                 hb_beamr:call(I, "call_host_add", [2, 3], Fun, none)),
    ?assertEqual({error, stopped}, begin hb_beamr:stop(I), hb_beamr:snapshot(I) end),
    ?assertEqual({error, stopped}, hb_beamr:restore(I, Snap)).

%% serialize/deserialize keep the seed's raw-memory format.
serialize_is_still_raw_memory_test() ->
    I = start(),
    mutate(I, 1),
    {ok, Raw} = hb_beamr:serialize(I),
    ?assertEqual(2 * 65536, byte_size(Raw)),
    ?assertEqual({ok, Raw}, hb_beamr_io:read(I, 0, 2 * 65536)),
    hb_beamr:stop(I).

aos_test_() ->
    {timeout, 120, fun() -> hb_beamr_test_util:with_shared(?AOS, fun aos/1) end}.

aos(Wasm) ->
    {ok, I, _, _} = hb_beamr:start(Wasm),
    {ok, <<"1">>} = hb_beamr_aos:output(hb_beamr_aos:eval(I, <<"Kept = 41 + 1 return 1">>)),
    {ok, Snap} = hb_beamr:snapshot(I),
    {ok, <<"2">>} = hb_beamr_aos:output(hb_beamr_aos:eval(I, <<"Kept = 0 return 2">>)),
    ok = hb_beamr:restore(I, Snap),
    ?assertEqual({ok, <<"42">>}, hb_beamr_aos:output(hb_beamr_aos:eval(I, <<"return Kept">>))),
    {ok, Fresh, _, _} = hb_beamr:start(Wasm, #{restore => Snap}),
    ?assertEqual({ok, <<"42">>}, hb_beamr_aos:output(hb_beamr_aos:eval(Fresh, <<"return Kept">>))),
    %% 100 snapshot/restore cycles of 12.6 MB keep no memory.
    Cycle = fun() -> {ok, S} = hb_beamr:snapshot(I), ok = hb_beamr:restore(I, S) end,
    Cycle(),
    erlang:garbage_collect(),
    Rss0 = hb_beamr_test_util:resident_mb(),
    [begin Cycle(), erlang:garbage_collect() end || _ <- lists:seq(1, 100)],
    Growth = hb_beamr_test_util:resident_mb() - Rss0,
    ?assert(Growth < 64, {resident_growth_mb, Growth}),
    [hb_beamr:stop(X) || X <- [I, Fresh]].

%% Migration: snapshot here, restore on another node into a fresh instance of the same
%% module, and the AO process carries on there.
migration_test_() ->
    {setup, fun hb_beamr_test_util:start_peer/0, fun hb_beamr_test_util:stop_peer/1,
     fun({_, Node}) -> {timeout, 120, fun() -> hb_beamr_test_util:with_shared(?AOS, fun(W) -> migrate(W, Node) end) end} end}.

migrate(Wasm, Node) ->
    {ok, Here, _, _} = hb_beamr:start(Wasm),
    {ok, <<"1">>} = hb_beamr_aos:output(hb_beamr_aos:eval(Here, <<"Greeting = 'hello from ' .. 'here' return 1">>)),
    {ok, Snap} = hb_beamr:snapshot(Here),
    ok = hb_beamr:stop(Here),
    {ok, There, _, _} = erpc:call(Node, hb_beamr, start, [Wasm, #{restore => Snap}]),
    ?assertEqual(Node, node(There)),
    Result = erpc:call(Node, hb_beamr_aos, eval, [There, <<"return Greeting">>]),
    ?assertEqual({ok, <<"hello from here">>}, hb_beamr_aos:output(Result)),
    %% And its state moves on over there, snapshot and all.
    _ = erpc:call(Node, hb_beamr_aos, eval, [There, <<"Greeting = Greeting .. '!' return 1">>]),
    {ok, Back} = hb_beamr:snapshot(There),
    {ok, Home, _, _} = hb_beamr:start(Wasm, #{restore => Back}),
    ?assertEqual({ok, <<"hello from here!">>}, hb_beamr_aos:output(hb_beamr_aos:eval(Home, <<"return Greeting">>))),
    [hb_beamr:stop(X) || X <- [There, Home]].
