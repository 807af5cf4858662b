%%% Hibernation: an idle instance gives up its executor and memory, and the next request
%%% revives it as if nothing happened.
-module(hb_beamr_hibernation_tests).

-include_lib("eunit/include/eunit.hrl").

-export([revival_refused/1, disk_full/2]).

-define(AOS, "fixtures/hyperbeam/aos-2-pure-xs.wasm").

%% Memory, a mutable global, a table entry set by table.set, and a start function that
%% counts its runs in the global: a revival must not run it again.
-define(WAT, <<"(module
  (memory 1 8)
  (global $g (mut i32) (i32.const 0))
  (global $starts (mut i32) (i32.const 0))
  (table 2 funcref)
  (elem declare func $hidden)
  (func $hidden (result i32) (i32.const 77))
  (func $start (global.set $starts (i32.add (global.get $starts) (i32.const 1))))
  (start $start)
  (func (export \"poke\") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  (func (export \"peek\") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export \"set_g\") (param i32) (global.set $g (local.get 0)))
  (func (export \"get_g\") (result i32) (global.get $g))
  (func (export \"starts\") (result i32) (global.get $starts))
  (func (export \"grow\") (result i32) (memory.grow (i32.const 1)))
  (func (export \"set_entry\") (table.set (i32.const 1) (ref.func $hidden)))
  (func (export \"call_entry\") (result i32) (call_indirect (result i32) (i32.const 1))))">>).

start() ->
    start(#{}).

start(Opts) ->
    {ok, I, _, _} = hb_beamr:start(?WAT, Opts),
    I.

call(I, Name, Args) ->
    {ok, Results} = hb_beamr:call(I, Name, Args),
    Results.

mutate(I) ->
    [] = call(I, <<"poke">>, [100, 42]),
    [] = call(I, <<"set_g">>, [9]),
    [] = call(I, <<"set_entry">>, []),
    [_] = call(I, <<"grow">>, []),
    [] = call(I, <<"poke">>, [70000, 5]).

check(I) ->
    ?assertEqual([42], call(I, <<"peek">>, [100])),
    ?assertEqual([5], call(I, <<"peek">>, [70000])),
    ?assertEqual([9], call(I, <<"get_g">>, [])),
    ?assertEqual([77], call(I, <<"call_entry">>, [])),
    ?assertEqual([1], call(I, <<"starts">>, [])).

%% A directory for image files, not made yet, unique to this run.
image_dir() ->
    filename:join(["/tmp", "hb_beamr_hibernate_" ++ os:getpid() ++ "_"
                   ++ integer_to_list(erlang:unique_integer([positive]))]).

info(I, Key) ->
    {ok, Info} = hb_beamr:info(I),
    maps:get(Key, Info).

%% Polls `Fun' until it returns true; fails after ten seconds.
eventually(Fun) ->
    eventually(Fun, 1000).

eventually(Fun, 0) ->
    ?assert(Fun());
eventually(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(10), eventually(Fun, N - 1)
    end.

hibernate_and_revive_test() ->
    I = start(),
    mutate(I),
    {ok, GasBefore} = hb_beamr:gas_used(I),
    MemoryBytes = info(I, memory_bytes),
    ?assertEqual(ok, hb_beamr:hibernate(I)),
    ?assertEqual(hibernated, info(I, state)),
    ?assert(info(I, image_bytes) > 0),
    ?assert(info(I, image_bytes) < 4096),
    %% A second request to hibernate is answered at once.
    ?assertEqual(ok, hb_beamr:hibernate(I)),
    ?assertEqual({ok, GasBefore}, hb_beamr:gas_used(I)),
    check(I),
    ?assertEqual(idle, info(I, state)),
    ?assertEqual(1, info(I, hibernations)),
    ?assertEqual(1, info(I, revivals)),
    ?assertEqual(MemoryBytes, info(I, memory_bytes)),
    %% Memory operations and snapshots revive too.
    ok = hb_beamr:hibernate(I),
    ?assertEqual({ok, <<42>>}, hb_beamr_io:read(I, 100, 1)),
    ok = hb_beamr:hibernate(I),
    {ok, Snapshot} = hb_beamr:snapshot(I),
    Other = start(#{restore => Snapshot}),
    check(Other),
    ok = hb_beamr:stop(Other),
    ok = hb_beamr:stop(I).

%% Calls queued while the instance revives keep their order: the revival serves them as
%% they came.
queued_calls_keep_their_order_test() ->
    I = start(),
    ok = hb_beamr:hibernate(I),
    Refs = [begin {ok, Ref} = hb_beamr:call_async(I, <<"poke">>, [100, N], #{}), Ref end
            || N <- lists:seq(1, 20)],
    {ok, Last} = hb_beamr:call_async(I, <<"peek">>, [100], #{}),
    [receive {hb_beamr_result, Ref, {ok, []}} -> ok after 10000 -> error({no_result, Ref}) end
     || Ref <- Refs],
    ?assertEqual({ok, [20]}, receive {hb_beamr_result, Last, Result} -> Result after 10000 -> none end),
    ?assertEqual(1, info(I, revivals)),
    ok = hb_beamr:stop(I).

%% `hibernate_after': an idle instance hibernates by itself.
hibernate_after_test() ->
    I = start(#{hibernate_after => 20}),
    mutate(I),
    eventually(fun() -> info(I, state) =:= hibernated end),
    check(I),
    eventually(fun() -> info(I, state) =:= hibernated end),
    ?assert(info(I, hibernations) >= 2),
    ok = hb_beamr:stop(I),
    ?assertEqual({error, stopped}, hb_beamr:call(I, <<"peek">>, [100])).

%% An incremental snapshot after a revival holds what changed before the hibernation too.
incremental_base_survives_test() ->
    I = start(),
    {ok, Full} = hb_beamr:snapshot(I, #{incremental => true}),
    mutate(I),
    ok = hb_beamr:hibernate(I),
    [] = call(I, <<"poke">>, [300, 3]),
    {ok, Delta} = hb_beamr:snapshot(I, #{incremental => true}),
    ?assertMatch({ok, #{kind := delta}}, hb_beamr:snapshot_info(Delta)),
    Other = start(#{restore => [Full, Delta]}),
    check(Other),
    ?assertEqual([3], call(Other, <<"peek">>, [300])),
    ok = hb_beamr:stop(Other),
    ok = hb_beamr:stop(I).

stop_frees_the_image_test() ->
    I = start(),
    mutate(I),
    ok = hb_beamr:hibernate(I),
    Bytes = info(I, image_bytes),
    #{image_bytes_memory := Before} = hb_beamr:stats(),
    ?assert(Before >= Bytes),
    ok = hb_beamr:stop(I),
    eventually(fun() -> maps:get(image_bytes_memory, hb_beamr:stats()) =< Before - Bytes end),
    ?assertEqual({error, stopped}, hb_beamr:call(I, <<"peek">>, [100])).

%% With `hibernate_dir' the image is a file, named by this VM's OS pid, while the instance
%% hibernates (and the first image written removes those of VMs that died); a damaged file
%% gives `invalid_snapshot' to every request and the instance stays hibernated; a stop then
%% removes it.
hibernate_dir_test() ->
    Dir = image_dir(),
    ok = file:make_dir(Dir),
    %% A pid above any pid_max: a VM that died.
    Stale = filename:join(Dir, "999999999-0000000000000001.hbimage"),
    ok = file:write_file(Stale, <<"left by a VM that died">>),
    I = start(#{hibernate_dir => Dir}),
    mutate(I),
    ok = hb_beamr:hibernate(I),
    [File] = filelib:wildcard(filename:join(Dir, "*.hbimage")),
    ?assertEqual(os:getpid(), hd(string:split(filename:basename(File), "-"))),
    #{image_bytes_disk := OnDisk} = hb_beamr:stats(),
    ?assert(OnDisk > 0),
    check(I),
    ?assertEqual([], filelib:wildcard(filename:join(Dir, "*.hbimage"))),
    ok = hb_beamr:hibernate(I),
    [File2] = filelib:wildcard(filename:join(Dir, "*.hbimage")),
    {ok, Bytes} = file:read_file(File2),
    Half = byte_size(Bytes) div 2,
    <<Head:Half/binary, B, Tail/binary>> = Bytes,
    ok = file:write_file(File2, <<Head/binary, (B bxor 1), Tail/binary>>),
    ?assertMatch({error, {invalid_snapshot, _}}, hb_beamr:call(I, <<"peek">>, [100])),
    ?assertMatch({error, {invalid_snapshot, _}}, hb_beamr_io:read(I, 100, 1)),
    ?assertEqual(hibernated, info(I, state)),
    ok = file:delete(File2),
    ?assertMatch({error, {invalid_snapshot, _}}, hb_beamr:call(I, <<"peek">>, [100])),
    ok = hb_beamr:stop(I),
    ?assertEqual([], filelib:wildcard(filename:join(Dir, "*.hbimage"))),
    ok = file:del_dir(Dir),
    _ = File.

%% An image that cannot be written (the directory became a file) leaves the instance live,
%% its state untouched, and the reason counted.
unwritable_hibernate_dir_test() ->
    Dir = image_dir(),
    I = start(#{hibernate_dir => Dir}),
    mutate(I),
    ok = file:del_dir(Dir),
    ok = file:write_file(Dir, <<"not a directory">>),
    #{failed_hibernations := #{disk := Before}} = hb_beamr:stats(),
    ?assertMatch({error, {disk, _}}, hb_beamr:hibernate(I)),
    ?assertEqual(idle, info(I, state)),
    ?assertMatch(#{failed_hibernations := #{disk := N}} when N =:= Before + 1, hb_beamr:stats()),
    check(I),
    ok = hb_beamr:stop(I),
    ok = file:delete(Dir).

%% Instances restored from one snapshot map its memory copy-on-write (from the second
%% restore on, when the snapshot becomes a shared base): each sees only its own writes,
%% an incremental snapshot after the restore holds a write to a page never written
%% before, and an instance hibernated and revived against the base keeps its state.
shared_snapshot_test() ->
    Source = start(),
    [] = call(Source, <<"poke">>, [100, 42]),
    [] = call(Source, <<"poke">>, [5000, 7]),
    {ok, Snapshot} = hb_beamr:snapshot(Source),
    ok = hb_beamr:stop(Source),
    Mapped = fun() -> length(string:lexemes(os:cmd("grep memfd:hb_beamr_base /proc/" ++ os:getpid() ++ "/maps"), "\n")) end,
    Before = Mapped(),
    [A, B, C] = [start() || _ <- [a, b, c]],
    [ok = hb_beamr:restore(I, Snapshot) || I <- [A, B, C]],
    ?assertEqual(Before + 2, Mapped()),
    [] = call(A, <<"poke">>, [100, 1]),
    ?assertEqual([[1], [42], [42]], [call(I, <<"peek">>, [100]) || I <- [A, B, C]]),
    [] = call(B, <<"poke">>, [5000, 9]),
    {ok, Delta} = hb_beamr:snapshot(B, #{incremental => true}),
    ok = hb_beamr:restore(C, [Snapshot, Delta]),
    ?assertEqual({[42], [9]}, {call(C, <<"peek">>, [100]), call(C, <<"peek">>, [5000])}),
    ok = hb_beamr:hibernate(A),
    ?assertEqual({[1], [7]}, {call(A, <<"peek">>, [100]), call(A, <<"peek">>, [5000])}),
    [ok = hb_beamr:stop(I) || I <- [A, B, C]].

%% A disk that fills up (a tmpfs of 64 KiB, in a child VM) while the image is written: the
%% instance stays live with its state, the reason is counted, no partial file is left.
disk_full_test_() ->
    {timeout, 120, fun() ->
        {Peer, Node, Dir} = hb_beamr_test_util:small_disk_peer(64 * 1024),
        Outcome = erpc:call(Node, ?MODULE, disk_full, [?WAT, Dir], 60000),
        peer:stop(Peer),
        ok = file:del_dir(Dir),
        ?assertMatch({{error, {disk, _}}, idle, 1, [], Same, Same}, Outcome)
    end}.

%% @private Runs in the child VM: 256 KiB of memory that does not compress, hibernated
%% into `Dir'.
-spec disk_full(binary(), string()) -> tuple().
disk_full(Wat, Dir) ->
    {ok, I, _, _} = hb_beamr:start(Wat, #{hibernate_dir => Dir}),
    [_] = call(I, <<"grow">>, []),
    [_] = call(I, <<"grow">>, []),
    [_] = call(I, <<"grow">>, []),
    Noise = rand:bytes(4 * 65536),
    ok = hb_beamr_io:write(I, 0, Noise),
    #{failed_hibernations := #{disk := Before}} = hb_beamr:stats(),
    Refused = hb_beamr:hibernate(I),
    #{failed_hibernations := #{disk := After}} = hb_beamr:stats(),
    {ok, Read} = hb_beamr_io:read(I, 0, byte_size(Noise)),
    {ok, Left} = file:list_dir(Dir),
    {Refused, info(I, state), After - Before, Left, Read, Noise}.

%% `max_live': beyond it, the least recently used idle instances hibernate; all answer.
max_live_test_() ->
    {timeout, 60, fun max_live/0}.

max_live() ->
    application:set_env(hb_beamr, max_live, 3),
    try
        Instances = [begin I = start(), [] = call(I, <<"poke">>, [100, N]), {I, N} end
                     || N <- lists:seq(1, 10)],
        ?assertMatch(#{max_live := 3}, hb_beamr:stats()),
        eventually(fun() ->
                           Live = [I || {I, _} <- Instances, info(I, state) =/= hibernated],
                           length(Live) =< 3
                   end),
        #{hibernated := Hibernated} = hb_beamr:stats(),
        ?assert(Hibernated >= 7),
        [?assertEqual([N], call(I, <<"peek">>, [100])) || {I, N} <- Instances],
        [ok = hb_beamr:stop(I) || {I, _} <- Instances]
    after
        application:unset_env(hb_beamr, max_live),
        %% The setting is node-wide: the next start without it lifts the budget.
        ok = hb_beamr:stop(start(#{}))
    end,
    ?assertMatch(#{max_live := infinity}, hb_beamr:stats()).

%% Many processes call, hibernate and stop at once: every request gets an answer (a
%% result or `stopped'), nothing hangs, and the state stays consistent.
races_test_() ->
    {timeout, 120, fun races/0}.

races() ->
    [race_round() || _ <- lists:seq(1, 20)],
    ok.

race_round() ->
    I = start(#{hibernate_after => 1}),
    [] = call(I, <<"poke">>, [100, 42]),
    Self = self(),
    Workers = [spawn_link(fun() ->
                                  Results = [race_step(I, K rem 3) || K <- lists:seq(1, 30)],
                                  Self ! {done, self(), Results}
                          end) || _ <- lists:seq(1, 6)],
    Stopper = spawn_link(fun() -> timer:sleep(rand:uniform(20)), ok = hb_beamr:stop(I) end),
    Results = lists:append([receive {done, W, R} -> R after 30000 -> error({hung, W}) end
                            || W <- Workers]),
    [?assert(lists:member(R, [ok, stopped])) || R <- Results],
    _ = Stopper,
    ok.

race_step(I, 0) ->
    case hb_beamr:call(I, <<"peek">>, [100]) of
        {ok, [42]} -> ok;
        {error, stopped} -> stopped
    end;
race_step(I, 1) ->
    case hb_beamr:hibernate(I) of
        ok -> ok;
        {error, busy} -> ok;
        {error, stopped} -> stopped
    end;
race_step(I, 2) ->
    case hb_beamr_io:read(I, 100, 1) of
        {ok, <<42>>} -> ok;
        {error, stopped} -> stopped
    end.

%% The owner dies while the instance hibernates: the image is freed.
owner_death_test() ->
    Parent = self(),
    spawn(fun() -> Parent ! {instance, start()}, receive never -> ok end end),
    I = receive {instance, Started} -> Started end,
    [] = call(I, <<"poke">>, [100, 1]),
    ok = hb_beamr:hibernate(I),
    exit(I, kill),
    eventually(fun() -> hb_beamr:info(I) =:= {error, stopped} end).

%% A revival the OS refuses (here: no address space left for the wasm memory, in a child
%% VM limited to 40 GiB) gives `{resource_limit, memory}' and the instance stays
%% hibernated; once there is room again, the next request revives it with its state.
revival_refused_test_() ->
    {timeout, 120, fun() ->
        {Peer, Node} = hb_beamr_test_util:address_limited_peer(40 bsl 30),
        Outcome = erpc:call(Node, ?MODULE, revival_refused, [?WAT], 60000),
        peer:stop(Peer),
        ?assertMatch({{error, {resource_limit, memory}}, hibernated, [42], idle}, Outcome)
    end}.

%% @private Runs in the limited child VM: fills the address space with instances,
%% hibernates one, lets another take its room, then asks the hibernated one.
-spec revival_refused(binary()) -> tuple().
revival_refused(Wat) ->
    {ok, I, _, _} = hb_beamr:start(Wat),
    [] = call(I, <<"poke">>, [100, 42]),
    {Fillers, {error, {resource_limit, _}}} = hb_beamr_test_util:start_until_refused(Wat, 100),
    ok = hb_beamr:hibernate(I),
    {ok, Taker, _, _} = hb_beamr:start(Wat),
    Refused = hb_beamr:call(I, <<"peek">>, [100]),
    State = info(I, state),
    [ok = hb_beamr:stop(F) || F <- [Taker | Fillers]],
    Revived = call(I, <<"peek">>, [100]),
    {Refused, State, Revived, info(I, state)}.

%% AOS: a process hibernated after an Eval answers the next one from the same state.
aos_test_() ->
    {timeout, 120, fun() -> hb_beamr_test_util:with_shared(?AOS, fun aos/1) end}.

aos(Wasm) ->
    {ok, I, _, _} = hb_beamr:start(Wasm),
    {ok, <<"1">>} = hb_beamr_aos:output(hb_beamr_aos:eval(I, <<"Kept = 41 + 1 return 1">>)),
    ok = hb_beamr:hibernate(I),
    Image = info(I, image_bytes),
    ?assert(Image < 1024 * 1024),
    ?assertEqual({ok, <<"42">>}, hb_beamr_aos:output(hb_beamr_aos:eval(I, <<"return Kept">>))),
    ok = hb_beamr:stop(I).
