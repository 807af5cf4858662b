%%% @doc A careless caller cannot crash, hang or bloat the node through the Erlang API (issue
%%% 19): every exported function answers garbage with an error tuple, unknown options are
%%% refused, a module's odd `malloc' is an error, an unreachable node is an error, the seed
%%% protocol forgets stopped instances, and a cache directory holding a FIFO or a symlink
%%% to `/dev/zero' neither hangs nor exhausts `start'.
-module(hb_beamr_careless_caller_tests).

-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

-define(MODULE_WAT, <<"(module
  (memory (export \"memory\") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export \"f\") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func (export \"malloc\") (param $n i32) (result i32)
    (global.get $next)
    (global.set $next (i32.add (global.get $next) (local.get $n))))
  (func (export \"free\") (param i32)))">>).

start() ->
    {ok, I, _, _} = hb_beamr:start(?MODULE_WAT),
    I.

%%% Unknown start and compile options (defect 20)

unknown_options_are_refused_test() ->
    [?assertEqual({error, {badarg, {options, Option}}}, Fun(?MODULE_WAT, maps:from_list([Option])))
     || Fun <- [fun hb_beamr:start/2, fun hb_beamr:compile/2],
        Option <- [{memory_limt, 65536}, {"mode", wasm}, {trace, true}]],
    %% Known options, also those a caller gives for the start function's limits.
    [begin
         {ok, I, _, _} = hb_beamr:start(?MODULE_WAT, Opts),
         ok = hb_beamr:stop(I)
     end || Opts <- [#{timeout => 500}, #{timeout => infinity}, #{gas => true},
                     #{mode => wasm, wamr_compat => true, memory_limit => 1 bsl 20,
                       deterministic => false, dirty_tracking => auto}]],
    %% Call options stay the caller's own (the import fun receives them).
    I = start(),
    ?assertEqual({ok, [2], s}, hb_beamr:call(I, "f", [1], fun hb_beamr:stub/3, s, #{my_key => 1})),
    ok = hb_beamr:stop(I).

%%% malloc's result (defects 19, 22)

malloc_results_outside_memory_are_errors_test() ->
    Cases = [{"(memory i64 1) (func (export \"malloc\") (param i64) (result i64) (i64.const -8))",
              {error, {bad_malloc_result, [-8]}}},
             {"(memory 1) (func (export \"malloc\") (param i32) (result i32) (i32.const 65536))",
              {error, {bad_malloc_result, [65536]}}},
             {"(memory 1) (func (export \"malloc\") (param i32) (result i32) (i32.const -8))",
              {error, {bad_malloc_result, [-8]}}},
             {"(memory 1) (func (export \"malloc\") (param i32))",
              {error, {bad_malloc_result, []}}},
             {"(memory 1) (func (export \"malloc\") (param i32) (result i32 i32) (i32.const 8) (i32.const 8))",
              {error, {bad_malloc_result, [8, 8]}}},
             {"(memory 1) (func (export \"malloc\") (param i32) (result i32) (i32.const 0))",
              {error, malloc_failed}},
             {"(memory i64 1) (func (export \"malloc\") (param i64) (result i64) (i64.const 4096))",
              {ok, 4096}}],
    [begin
         {ok, I, _, _} = hb_beamr:start(iolist_to_binary(["(module ", Wat, ")"]), #{wamr_compat => false}),
         ?assertEqual({Wat, Expected}, {Wat, hb_beamr_io:malloc(I, 16)}),
         case Expected of
             {ok, Ptr} -> ?assertEqual({ok, Ptr}, hb_beamr_io:write_string(I, <<"hi">>));
             {error, _} -> ?assertEqual(Expected, hb_beamr_io:write_string(I, <<"hi">>))
         end,
         ok = hb_beamr:stop(I)
     end || {Wat, Expected} <- Cases].

%%% reply/2 and instances on nodes that are not connected (defect 22)

reply_to_anything_but_a_call_is_an_error_test() ->
    [?assertEqual({error, {badarg, {call_ref, Ref}}}, hb_beamr:reply(Ref, Answer))
     || Ref <- [make_ref(), foo, self(), 42, <<"ref">>], Answer <- [[1], {error, why}]].

unreachable_node_is_an_error_test() ->
    Node = 'hb_beamr_ghost@127.0.0.1',
    I = remote_pid(Node),
    Unreachable = {error, {noconnection, Node}},
    ?assertEqual(ok, hb_beamr:stop(I)),
    ?assertEqual({error, {noconnection, Node}, state},
                 hb_beamr:call(I, "f", [1], fun hb_beamr:stub/3, state, #{})),
    [?assertEqual({Name, Unreachable}, {Name, Fun()})
     || {Name, Fun} <- [{call, fun() -> hb_beamr:call(I, "f", [1]) end},
                        {gas_used, fun() -> hb_beamr:gas_used(I) end},
                        {info, fun() -> hb_beamr:info(I) end},
                        {hibernate, fun() -> hb_beamr:hibernate(I) end},
                        {serialize, fun() -> hb_beamr:serialize(I) end},
                        {deserialize, fun() -> hb_beamr:deserialize(I, <<>>) end},
                        {snapshot, fun() -> hb_beamr:snapshot(I) end},
                        {restore, fun() -> hb_beamr:restore(I, <<"snapshot">>) end},
                        {size, fun() -> hb_beamr_io:size(I) end},
                        {read, fun() -> hb_beamr_io:read(I, 0, 1) end},
                        {write, fun() -> hb_beamr_io:write(I, 0, <<1>>) end},
                        {read_string, fun() -> hb_beamr_io:read_string(I, 0) end},
                        {write_string, fun() -> hb_beamr_io:write_string(I, "s") end},
                        {malloc, fun() -> hb_beamr_io:malloc(I, 1) end},
                        {free, fun() -> hb_beamr_io:free(I, 1) end}]].

%% A pid of `Node', which this VM has never been connected to.
remote_pid(Node) ->
    Name = atom_to_binary(Node),
    binary_to_term(<<131, 88, 119, (byte_size(Name)), Name/binary, 1:32, 0:32, 1:32>>).

%%% Every exported function given garbage (defect 22)

garbage_gives_error_tuples_test_() ->
    {timeout, 60, fun garbage_gives_error_tuples/0}.

garbage_gives_error_tuples() ->
    I = start(),
    Dead = spawn(fun() -> ok end),
    Garbage = [foo, -1, 1 bsl 70, 1.5, <<"x">>, "str", {a, b}, [1 | 2], #{}, make_ref(), self(), Dead,
               fun() -> ok end],
    %% Each function with valid arguments (from a live instance), then with each argument in
    %% turn replaced by each garbage value.
    Functions = [{hb_beamr, start, [?MODULE_WAT]}, {hb_beamr, start, [?MODULE_WAT, #{}]},
                 {hb_beamr, compile, [?MODULE_WAT, #{}]},
                 {hb_beamr, call, [I, "f", [1]]}, {hb_beamr, call, [I, 0, [1]]},
                 {hb_beamr, call_async, [I, 0, [1], #{}]}, {hb_beamr, call, [I, "f", [1], fun hb_beamr:stub/3]},
                 {hb_beamr, call, [I, "f", [1], fun hb_beamr:stub/3, s]},
                 {hb_beamr, call, [I, "f", [1], fun hb_beamr:stub/3, s, #{}]},
                 {hb_beamr, serialize, [I]}, {hb_beamr, deserialize, [I, <<>>]},
                 {hb_beamr, gas_used, [I]}, {hb_beamr, info, [I]}, {hb_beamr, hibernate, [I]},
                 {hb_beamr, snapshot, [I]}, {hb_beamr, snapshot, [I, #{}]},
                 {hb_beamr, restore, [I, <<"not a snapshot">>]}, {hb_beamr, snapshot_info, [<<"x">>]},
                 {hb_beamr, call_async, [I, "f", [1], #{}]}, {hb_beamr, reply, [make_ref(), [1]]},
                 {hb_beamr, wasm_send, [I, {command, term_to_binary({call, "f", [1]})}]},
                 {hb_beamr_io, size, [I]}, {hb_beamr_io, read, [I, 0, 4]}, {hb_beamr_io, write, [I, 0, <<1>>]},
                 {hb_beamr_io, read_string, [I, 0]}, {hb_beamr_io, read_string, [I, 0, 8]},
                 {hb_beamr_io, write_string, [I, <<"s">>]},
                 {hb_beamr_io, malloc, [I, 4]}, {hb_beamr_io, free, [I, 1024]},
                 {hb_beamr_io, snapshot, [I]}, {hb_beamr_io, restore, [I, <<>>]}],
    Exported = lists:usort([{M, F, length(A)} || {M, F, A} <- Functions]),
    Internal = [{hb_beamr, stub, 3}, {hb_beamr, load_driver, 0}, {hb_beamr, stop, 1}, {hb_beamr_io, request, 3},
                {hb_beamr, stats, 0},
                {hb_beamr, module_info, 0}, {hb_beamr, module_info, 1},
                {hb_beamr_io, module_info, 0}, {hb_beamr_io, module_info, 1}],
    %% Every export is covered here, or on purpose elsewhere (stop/1 below).
    ?assertEqual([], [{M, F, A} || M <- [hb_beamr, hb_beamr_io], {F, A} <- M:module_info(exports),
                                   not lists:member({M, F, A}, Exported ++ Internal)]),
    Calls = [{M, F, Args} || {M, F, Valid} <- Functions,
                             Args <- [Valid | [replace(Valid, N, G) || N <- lists:seq(1, length(Valid)),
                                                                       G <- Garbage]]],
    Raised = [{M, F, Args, Class, Reason} || {M, F, Args} <- Calls,
                                             {raised, Class, Reason} <- [outcome(M, F, Args)]],
    ?assertEqual([], Raised),
    ?assertEqual(ok, hb_beamr:stop(Dead)),
    [?assertMatch({error, {badarg, {instance, _}}}, hb_beamr:stop(G)) || G <- Garbage, G =/= Dead],
    %% Results of the asynchronous calls and wasm_send/2 above.
    flush(),
    ok = hb_beamr:stop(I).

replace(Args, N, Value) ->
    {Before, [_ | After]} = lists:split(N - 1, Args),
    Before ++ [Value | After].

%% What a call returned, or that it raised; started instances are stopped at once.
outcome(M, F, Args) ->
    try apply(M, F, Args) of
        {ok, Instance, _, _} when is_pid(Instance) -> hb_beamr:stop(Instance);
        Result -> Result
    catch
        Class:Reason -> {raised, Class, Reason}
    end.

flush() ->
    receive _ -> flush() after 0 -> ok end.

%%% The seed protocol keeps nothing of stopped instances (defect 13)

seed_calls_of_stopped_instances_are_forgotten_test_() ->
    {timeout, 300, fun seed_calls_of_stopped_instances_are_forgotten/0}.

seed_calls_of_stopped_instances_are_forgotten() ->
    Call = {command, term_to_binary({call, "f", [41]})},
    Cycle = fun(Stop) ->
                    I = start(),
                    ok = hb_beamr:wasm_send(I, Call),
                    receive {execution_result, [42]} -> ok after 5000 -> error(no_result) end,
                    Stop(I),
                    I
            end,
    %% Stopped by this process: nothing is left.
    Stopped = [Cycle(fun hb_beamr:stop/1) || _ <- lists:seq(1, 10000)],
    ?assertEqual([], seed_entries(Stopped)),
    %% Stopped by another process: what is left stays within a few entries.
    StopElsewhere = fun(I) ->
                            {Pid, Ref} = spawn_monitor(fun() -> ok = hb_beamr:stop(I) end),
                            receive {'DOWN', Ref, process, Pid, normal} -> ok end
                    end,
    Elsewhere = [Cycle(StopElsewhere) || _ <- lists:seq(1, 2000)],
    ?assert(length(seed_entries(Elsewhere)) =< 8),
    %% A live instance keeps its calls: an import still gets answered.
    Live = start(),
    ok = hb_beamr:wasm_send(Live, Call),
    receive {execution_result, [42]} -> ok end,
    ?assertEqual({error, no_import_pending},
                 hb_beamr:wasm_send(Live, {command, term_to_binary({import_response, [0]})})),
    ok = hb_beamr:stop(Live),
    ?assertEqual([], seed_entries([Live])).

%% Process dictionary entries that mention any of `Instances'.
seed_entries(Instances) ->
    Stopped = sets:from_list(Instances, [{version, 2}]),
    [Entry || {_Key, Value} = Entry <- get(), mentions(Value, Stopped)]
        ++ [Key || {Key, _} <- get(), mentions(Key, Stopped)].

mentions(Pid, Set) when is_pid(Pid) -> sets:is_element(Pid, Set);
mentions(Tuple, Set) when is_tuple(Tuple) -> mentions(tuple_to_list(Tuple), Set);
mentions(Map, Set) when is_map(Map) -> mentions(maps:to_list(Map), Set);
mentions([H | T], Set) -> mentions(H, Set) orelse mentions(T, Set);
mentions(_, _Set) -> false.

%%% A cache directory holding what is not a regular file (defect 9)

odd_cache_files_neither_hang_nor_exhaust_start_test_() ->
    {timeout, 120, fun odd_cache_files_neither_hang_nor_exhaust_start/0}.

odd_cache_files_neither_hang_nor_exhaust_start() ->
    Root = filename:join(filename:basedir(user_cache, "hb_beamr"), "careless_" ++ os:getpid()),
    ok = filelib:ensure_path(Root),
    try
        %% A key file that is a FIFO: an error at once, and other directories still work.
        FifoKey = filename:join(Root, "fifo_key"),
        ok = filelib:ensure_path(FifoKey),
        mkfifo(filename:join(FifoKey, "hb_beamr.key")),
        ?assertMatch({error, {cache_dir, _}}, promptly(fun() -> hb_beamr:start(?MODULE_WAT, #{cache_dir => FifoKey}) end)),
        {ok, J, _, _} = promptly(fun() -> hb_beamr:start(?MODULE_WAT, #{cache_dir => filename:join(Root, "good")}) end),
        ok = hb_beamr:stop(J),
        %% Entries that are a FIFO or a symlink to /dev/zero: a miss, compiled and replaced. The
        %% entry's name is learnt from a peer VM that compiles the module first (this VM has
        %% then never seen the module, so its memory cache cannot answer).
        [begin
             Dir = filename:join(Root, Shape),
             Wat = unique_module(Shape),
             Entry = entry_made_by_peer(Wat, Dir),
             ok = file:delete(Entry),
             Make(Entry),
             {ok, I, _, _} = promptly(fun() -> hb_beamr:start(Wat, #{cache_dir => Dir}) end),
             ?assertMatch({ok, #{origin := compiled}}, hb_beamr:info(I)),
             ok = hb_beamr:stop(I),
             ?assertMatch({ok, #file_info{type = regular}}, file:read_link_info(Entry))
         end || {Shape, Make} <- [{"fifo", fun mkfifo/1},
                                  {"zero", fun(Entry) -> ok = file:make_symlink("/dev/zero", Entry) end}]]
    after
        file:del_dir_r(Root)
    end.

unique_module(Tag) ->
    iolist_to_binary(["(module (func (export \"", Tag, integer_to_list(erlang:unique_integer([positive])),
                      "\") (result i32) i32.const 1))"]).

%% The cache entry a peer VM writes into `Dir' when it starts `Wat'.
entry_made_by_peer(Wat, Dir) ->
    {ok, Peer, _Node} = peer:start_link(#{connection => standard_io, args => ["-pa" | code:get_path()]}),
    try
        {ok, I, _, _} = peer:call(Peer, hb_beamr, start, [Wat, #{cache_dir => Dir}], 60000),
        ok = peer:call(Peer, hb_beamr, stop, [I])
    after
        peer:stop(Peer)
    end,
    [Entry] = filelib:wildcard(filename:join(Dir, "*.hbm")),
    Entry.

mkfifo(Path) ->
    "" = os:cmd("mkfifo '" ++ Path ++ "'").

%% `Fun()', which must return within 10 s (a blocked read would hang the suite otherwise).
promptly(Fun) ->
    Self = self(),
    {Pid, Monitor} = spawn_monitor(fun() -> Self ! {self(), Fun()} end),
    receive
        {Pid, Result} -> erlang:demonitor(Monitor, [flush]), Result;
        {'DOWN', Monitor, process, Pid, Why} -> error({failed, Why})
    after 10000 ->
        error(blocked)
    end.
