%%% @doc Incremental snapshots (hb_beamr:snapshot/2 with `incremental => true', restore/2
%%% of a chain `[Full | Deltas]'): a delta holds what changed since the instance's last
%%% snapshot or restore (pages written by wasm or by the host, growth, globals, table 0),
%%% chains restore byte for byte into fresh instances with either way of finding changes
%%% (`dirty_tracking => auto | digests'), and chains that are broken, tampered with or of
%%% another module are refused, leaving the instance as it was.
-module(hb_beamr_incremental_tests).

-include_lib("eunit/include/eunit.hrl").

-define(PAGE, 4096).

wat() -> hb_beamr_test_util:fixture("incremental.wat").

start(Tracking) ->
    {ok, I, _, _} = hb_beamr:start(wat(), #{dirty_tracking => Tracking}),
    I.

delta(I) ->
    {ok, Snapshot} = hb_beamr:snapshot(I, #{incremental => true}),
    Snapshot.

info(Snapshot) ->
    {ok, Info} = hb_beamr:snapshot_info(Snapshot),
    Info.

%% Stores `Value' in `Count' pages from `First', every `Stride' pages.
scatter(I, First, Stride, Count, Value) ->
    {ok, []} = hb_beamr:call(I, "scatter", [First, Stride, Count, Value]),
    ok.

%% The state as seen from outside, without taking a snapshot (which would move the base).
observe(I) ->
    {ok, Memory} = hb_beamr:serialize(I),
    {ok, [Count]} = hb_beamr:call(I, "count", []),
    {ok, [Slot0]} = hb_beamr:call(I, "call0", []),
    {erlang:md5(Memory), byte_size(Memory), Count, Slot0}.

%% The whole state, byte for byte.
full_state(I) ->
    {ok, Snapshot} = hb_beamr:snapshot(I),
    Snapshot.

restored(Tracking, Chain) ->
    {ok, I, _, _} = hb_beamr:start(wat(), #{dirty_tracking => Tracking, restore => Chain}),
    I.

%% `Look(I)' of a fresh instance restored from `Chain'.
restored(Tracking, Chain, Look) ->
    I = restored(Tracking, Chain),
    try Look(I) after hb_beamr:stop(I) end.

both_ways_test_() ->
    Tests = [{"a chain restores each state byte for byte", fun chain_restores_byte_for_byte/1},
             {"a delta holds only the pages that changed", fun deltas_hold_only_what_changed/1},
             {"a restored state is the base of the next delta", fun restore_is_the_base/1},
             {"a rollback to a smaller snapshot", fun rollback_to_a_smaller_state/1},
             {"a plain snapshot is a base too", fun plain_snapshot_is_a_base/1}],
    [{lists:flatten(io_lib:format("~s (~s)", [Name, Tracking])), fun() -> Test(Tracking) end}
     || Tracking <- [auto, digests], {Name, Test} <- Tests].

chain_restores_byte_for_byte(Tracking) ->
    I = start(Tracking),
    %% No base yet: the first incremental snapshot is a full one, the start of a chain.
    Full = delta(I),
    ?assertMatch(#{kind := full, sequence := 0, parent := none}, info(Full)),
    S0 = observe(I),
    ok = scatter(I, 3, 5, 4, 7),
    {ok, [1]} = hb_beamr:call(I, "bump", []),
    D1 = delta(I),
    S1 = observe(I),
    %% Memory grows (WAMR's layout gave the module 2 pages) and the table changes.
    {ok, [2]} = hb_beamr:call(I, "grow", [3]),
    ok = scatter(I, 70, 1, 3, 9),
    ok = scatter(I, 3, 1, 1, 8),
    {ok, []} = hb_beamr:call(I, "swap", []),
    D2 = delta(I),
    S2 = observe(I),
    %% Writes by the host count as much as writes by wasm.
    ok = hb_beamr_io:write(I, 20 * ?PAGE + 5, <<"written by the host">>),
    ok = hb_beamr:deserialize(I, <<"raw">>),
    D3 = delta(I),
    S3 = observe(I),
    D4 = delta(I),
    Chain = [Full, D1, D2, D3, D4],
    Infos = [info(S) || S <- Chain],
    ?assertEqual([full, delta, delta, delta, delta], [K || #{kind := K} <- Infos]),
    ?assertEqual([0, 1, 2, 3, 4], [N || #{sequence := N} <- Infos]),
    ?assertEqual([Id || #{id := Id} <- lists:droplast(Infos)], [P || #{parent := P} <- tl(Infos)]),
    [?assertEqual({N, S}, {N, restored(Tracking, lists:sublist(Chain, N), fun observe/1)})
     || {N, S} <- [{1, S0}, {2, S1}, {3, S2}, {4, S3}, {5, S3}]],
    %% Memory, globals and table: the same full snapshot as the original's.
    ?assertEqual(full_state(I), restored(Tracking, Chain, fun full_state/1)),
    hb_beamr:stop(I).

deltas_hold_only_what_changed(Tracking) ->
    I = start(Tracking),
    {ok, [2]} = hb_beamr:call(I, "grow", [62]),
    Full = delta(I),
    ?assert(byte_size(Full) > 64 * 65536),
    ok = scatter(I, 10, 100, 5, 1),
    D = delta(I),
    ?assert(byte_size(D) >= 5 * ?PAGE andalso byte_size(D) < 5 * ?PAGE + 512, {size, byte_size(D)}),
    Empty = delta(I),
    ?assert(byte_size(Empty) < 512, {size, byte_size(Empty)}),
    ?assertEqual(observe(I), restored(Tracking, [Full, D, Empty], fun observe/1)),
    hb_beamr:stop(I).

restore_is_the_base(Tracking) ->
    I = start(Tracking),
    Full = delta(I),
    ok = scatter(I, 1, 2, 3, 4),
    D1 = delta(I),
    J = restored(Tracking, [Full, D1]),
    ok = scatter(J, 2, 2, 3, 5),
    {ok, [1]} = hb_beamr:call(J, "bump", []),
    D2 = delta(J),
    ?assertMatch(#{sequence := 2}, info(D2)),
    ?assertEqual(maps:get(id, info(D1)), maps:get(parent, info(D2))),
    ?assertEqual(observe(J), restored(Tracking, [Full, D1, D2], fun observe/1)),
    %% Restoring in place (a rollback) makes the base too.
    ok = hb_beamr:restore(J, [Full]),
    ok = scatter(J, 9, 1, 1, 9),
    D3 = delta(J),
    ?assertEqual(maps:get(id, info(Full)), maps:get(parent, info(D3))),
    ?assertEqual(observe(J), restored(Tracking, [Full, D3], fun observe/1)),
    [hb_beamr:stop(X) || X <- [I, J]].

%% Memory cannot shrink: restoring a smaller state leaves zeros past it, and the next
%% delta (of the larger memory) restores the same.
rollback_to_a_smaller_state(Tracking) ->
    I = start(Tracking),
    Full = delta(I),
    {ok, [2]} = hb_beamr:call(I, "grow", [4]),
    ok = scatter(I, 40, 3, 10, 6),
    _ = delta(I),
    ok = hb_beamr:restore(I, Full),
    ok = scatter(I, 2, 1, 1, 3),
    D = delta(I),
    ?assertMatch({_, 6 * 65536, 0, 1}, observe(I)),
    ?assertEqual(full_state(I), restored(Tracking, [Full, D], fun full_state/1)),
    hb_beamr:stop(I).

%% snapshot/1 is a base as much as an incremental one; the first delta after it compares
%% page digests, then the kernel (where available) takes over.
plain_snapshot_is_a_base(Tracking) ->
    I = start(Tracking),
    {ok, Full} = hb_beamr:snapshot(I),
    ok = scatter(I, 5, 1, 2, 1),
    D1 = delta(I),
    ok = scatter(I, 6, 1, 2, 2),
    D2 = delta(I),
    {ok, Full2} = hb_beamr:snapshot(I),
    ?assertEqual(Full2, restored(Tracking, [Full, D1, D2], fun full_state/1)),
    ok = scatter(I, 0, 1, 1, 3),
    D3 = delta(I),
    ?assertEqual(maps:get(id, info(Full2)), maps:get(parent, info(D3))),
    ?assertEqual(full_state(I), restored(Tracking, [Full2, D3], fun full_state/1)),
    hb_beamr:stop(I).

%% The kernel sees writes, digests see contents: a page written with the bytes it held
%% is in the delta only with the kernel's tracking. Either way no change is missed.
same_bytes_written_again_test() ->
    Kernel = hb_beamr_nif:kernel_dirty_tracking(),
    [begin
         I = start(Tracking),
         _ = delta(I),
         ok = scatter(I, 5, 1, 1, 0),
         D = delta(I),
         Expected = Tracking =:= auto andalso Kernel,
         ?assertEqual({Tracking, Expected}, {Tracking, byte_size(D) > ?PAGE}),
         hb_beamr:stop(I)
     end || Tracking <- [auto, digests]].

%% The issue's figure: 1% of the 4 KiB pages of 256 MiB written, scattered; the delta is
%% at most 3% of a full snapshot (time is `make bench''s to measure).
quarter_gib_test_() ->
    {timeout, 120, fun() -> [quarter_gib(Tracking) || Tracking <- [auto, digests]] end}.

quarter_gib(Tracking) ->
    I = start(Tracking),
    {ok, [2]} = hb_beamr:call(I, "grow", [4094]),
    Pages = 4096 * 16,
    ok = scatter(I, 0, 1, Pages, 1),
    Full = delta(I),
    Written = Pages div 100,
    ok = scatter(I, 7, 100, Written, 2),
    D = delta(I),
    ?assert(byte_size(D) >= Written * ?PAGE andalso byte_size(D) < Written * ?PAGE + 8192, {size, byte_size(D)}),
    ?assert(byte_size(D) / byte_size(Full) =< 0.03),
    ?assertEqual(hb_beamr:serialize(I), restored(Tracking, [Full, D], fun hb_beamr:serialize/1)),
    hb_beamr:stop(I).

bad_chains_leave_the_instance_untouched_test() ->
    I = start(auto),
    Full = delta(I),
    ok = scatter(I, 1, 1, 2, 1),
    D1 = delta(I),
    ok = scatter(I, 4, 1, 2, 2),
    D2 = delta(I),
    %% (Full snapshots name their content: another instance in the same state would give
    %% the very same snapshot, which D1 may follow.)
    Other = start(auto),
    ok = scatter(Other, 1, 1, 1, 5),
    OtherFull = delta(Other),
    Target = start(auto),
    TargetBase = delta(Target),
    ok = scatter(Target, 30, 1, 2, 9),
    {ok, [1]} = hb_beamr:call(Target, "bump", []),
    Before = observe(Target),
    Invalid = [D1, [D1], [D1, D2], [Full, D2], [Full, D2, D1], [Full, D1, D1], [Full, D1, D2, D1],
               [Full, Full], [OtherFull, D1], [Full, OtherFull, D1], [Full, flip(D1, 10)],
               [Full, flip(D1, byte_size(D1) - 1)], [Full, binary:part(D1, 0, byte_size(D1) - 1)],
               [Full, <<D1/binary, 0>>], [Full, <<"junk">>], [flip(Full, 200), D1]],
    [?assertMatch({Chain, {error, {invalid_snapshot, _}}}, {Chain, hb_beamr:restore(Target, Chain)})
     || Chain <- Invalid],
    ?assertMatch({error, {invalid_snapshot, <<"a delta cannot be restored", _/binary>>}}, hb_beamr:restore(Target, D1)),
    ?assertMatch({error, {invalid_snapshot, _}}, hb_beamr:start(wat(), #{restore => [D1]})),
    Bad = [[], [Full, 42], [Full | D1], #{}, 42],
    [?assertEqual({error, {badarg, {snapshot, B}}}, hb_beamr:restore(Target, B)) || B <- Bad],
    [?assertEqual({error, {badarg, {options, {restore, B}}}}, hb_beamr:start(wat(), #{restore => B})) || B <- Bad],
    ?assertEqual(Before, observe(Target)),
    %% Nor did the refusals move its base: the next delta follows its last snapshot.
    TargetDelta = delta(Target),
    ?assertEqual(maps:get(id, info(TargetBase)), maps:get(parent, info(TargetDelta))),
    ?assertEqual(Before, restored(auto, [TargetBase, TargetDelta], fun observe/1)),
    [hb_beamr:stop(X) || X <- [I, Other, Target]].

flip(Bin, At) ->
    <<Pre:At/binary, Byte, Post/binary>> = Bin,
    <<Pre/binary, (Byte bxor 16#10), Post/binary>>.

another_module_is_a_mismatch_test() ->
    I = start(auto),
    Full = delta(I),
    ok = scatter(I, 1, 1, 2, 1),
    D1 = delta(I),
    %% Without WAMR's extra page the prepared module differs: another module to snapshots.
    {ok, Other, _, _} = hb_beamr:start(wat(), #{wamr_compat => false}),
    OtherFull = delta(Other),
    ok = scatter(Other, 1, 1, 2, 1),
    OtherD1 = delta(Other),
    OtherBefore = observe(Other),
    ?assertMatch({error, {snapshot_mismatch, _}}, hb_beamr:restore(Other, [Full, D1])),
    ?assertMatch({error, {snapshot_mismatch, _}}, hb_beamr:restore(Other, Full)),
    ?assertEqual(OtherBefore, observe(Other)),
    Before = observe(I),
    ?assertMatch({error, {snapshot_mismatch, _}}, hb_beamr:restore(I, [Full, OtherD1])),
    ?assertMatch({error, {snapshot_mismatch, _}}, hb_beamr:restore(I, [OtherFull, OtherD1])),
    ?assertEqual(Before, observe(I)),
    [hb_beamr:stop(X) || X <- [I, Other]].

bad_options_test() ->
    I = start(auto),
    ?assertEqual({error, {badarg, {options, {incremental, yes}}}}, hb_beamr:snapshot(I, #{incremental => yes})),
    ?assertEqual({error, {badarg, {options, {full, true}}}}, hb_beamr:snapshot(I, #{full => true})),
    ?assertEqual({error, {badarg, {options, incremental}}}, hb_beamr:snapshot(I, incremental)),
    ?assertEqual({error, {badarg, {instance, nope}}}, hb_beamr:snapshot(nope, #{})),
    ?assertEqual({error, {badarg, {options, {dirty_tracking, fast}}}},
                 hb_beamr:start(wat(), #{dirty_tracking => fast})),
    ?assertMatch({error, {invalid_snapshot, _}}, hb_beamr:snapshot_info(<<"junk">>)),
    ?assertEqual({error, {badarg, {snapshot, 42}}}, hb_beamr:snapshot_info(42)),
    ?assertMatch({ok, _}, hb_beamr:snapshot(I, #{incremental => false})),
    hb_beamr:stop(I),
    ?assertEqual({error, stopped}, hb_beamr:snapshot(I, #{incremental => true})).

%% Snapshots of the format before deltas (version 1) still restore, and start a chain.
version_1_snapshots_still_restore_test() ->
    V1 = zlib:uncompress(hb_beamr_test_util:fixture("snapshot_v1.bin.z")),
    Wat = hb_beamr_test_util:fixture("snapshot.wat"),
    ?assertMatch(#{kind := full, sequence := 0}, info(V1)),
    {ok, I, _, _} = hb_beamr:start(Wat, #{restore => V1}),
    ?assertEqual({ok, [7]}, hb_beamr:call(I, "counter", [])),
    ?assertEqual({ok, [5000]}, hb_beamr:call(I, "sp", [])),
    ?assertEqual({ok, [2.5]}, hb_beamr:call(I, "ratio", [])),
    ?assertEqual({ok, [2]}, hb_beamr:call(I, "call_slot", [2])),
    ?assertEqual({ok, <<"written by version 1">>}, hb_beamr_io:read(I, 100, 20)),
    ?assertEqual({ok, [1]}, hb_beamr:call(I, "call_kept", [])),
    D = delta(I),
    ?assertEqual(maps:get(id, info(V1)), maps:get(parent, info(D))),
    {ok, J, _, _} = hb_beamr:start(Wat, #{restore => [V1, D]}),
    ?assertEqual(full_state(I), full_state(J)),
    [hb_beamr:stop(X) || X <- [I, J]].
