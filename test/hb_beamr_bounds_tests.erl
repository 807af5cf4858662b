%%% @doc Waits that end and work that stays bounded: start functions under limits, calls
%%% queued behind a call that waits, memory a Store must not keep, copies sized by a
%%% module or a caller, argument lists of any length, and the order of an asynchronous
%%% call's messages when stop/1 races it.
-module(hb_beamr_bounds_tests).

-include_lib("eunit/include/eunit.hrl").

-export([serialize_under_thread_limit/1]).

-define(LOOPING_START, <<"(module (func $s (loop $l (br $l))) (start $s) (func (export \"f\")))">>).

%% A start function that never ends is ended by the start's `timeout' or `gas'.
start_function_under_limits_test() ->
    ?assertMatch({error, {trap, timeout, _}}, hb_beamr:start(?LOOPING_START, #{timeout => 50})),
    ?assertMatch({error, {trap, out_of_gas, _}}, hb_beamr:start(?LOOPING_START, #{gas => 100000})),
    %% A start function within its limits starts; `gas => true' is still accepted.
    Counted = <<"(module (global $n (mut i32) (i32.const 0))
                  (func $s (loop $l (global.set $n (i32.add (global.get $n) (i32.const 1)))
                                    (br_if $l (i32.lt_u (global.get $n) (i32.const 1000)))))
                  (start $s)
                  (func (export \"n\") (result i32) global.get $n))">>,
    {ok, I, _, _} = hb_beamr:start(Counted, #{timeout => 5000, gas => 1000000}),
    ?assertEqual({ok, [1000]}, hb_beamr:call(I, "n", [])),
    ok = hb_beamr:stop(I),
    {ok, J, _, _} = hb_beamr:start(Counted, #{gas => true}),
    ok = hb_beamr:stop(J),
    ?assertEqual({error, {badarg, {options, {timeout, soon}}}}, hb_beamr:start(Counted, #{timeout => soon})).

%% While a start function runs, its instance says `starting' (not `idle'), and killing the
%% process that called start/1 ends it: no executor is left behind.
killed_starter_ends_a_looping_start_test() ->
    Threads = hb_beamr_test_util:executor_threads(),
    Owners = owners(),
    Starter = spawn(fun() -> hb_beamr:start(?LOOPING_START) end),
    [Owner] = wait_for(fun() -> case owners() -- Owners of [New] -> [New]; _ -> false end end),
    ?assertMatch({ok, #{state := starting}}, hb_beamr:info(Owner)),
    exit(Starter, kill),
    ?assertEqual(Threads, hb_beamr_test_util:settle(fun hb_beamr_test_util:executor_threads/0, Threads)).

wait_for(Poll) ->
    case Poll() of
        false -> timer:sleep(10), wait_for(Poll);
        Value -> Value
    end.

owners() ->
    [P || P <- processes(), erlang:process_info(P, initial_call) =:= {initial_call, {hb_beamr_owner, owner, 1}}].

%% A call queued behind another caller's call keeps its deadline while that call waits
%% for an import its caller never answers.
queued_call_keeps_its_deadline_test() ->
    Wat = <<"(module (import \"env\" \"never\" (func $never))
               (func (export \"waits\") call $never)
               (func (export \"quick\") (result i32) i32.const 1))">>,
    {ok, I, _, _} = hb_beamr:start(Wat),
    Self = self(),
    Waiter = spawn(fun() ->
        {ok, Ref} = hb_beamr:call_async(I, "waits", [], #{}),
        receive {hb_beamr_import, Ref, _} -> Self ! in_import end,
        receive never -> ok end
    end),
    receive in_import -> ok end,
    ?assertMatch({error, {trap, timeout, _}, #{}},
                 hb_beamr:call(I, "quick", [], fun hb_beamr:stub/3, #{}, #{timeout => 100})),
    %% The waiting call is not disturbed, and the instance serves others once it is over.
    exit(Waiter, kill),
    ?assertEqual({ok, [1]}, hb_beamr_test_util:settle(fun() -> hb_beamr:call(I, "quick", []) end, {ok, [1]})),
    hb_beamr:stop(I).

%% A call queued behind a running loop keeps its deadline too (checks in the loop notice it).
queued_call_behind_a_running_call_test() ->
    Wat = <<"(module (func (export \"spin\") (loop $l (br $l)))
               (func (export \"quick\") (result i32) i32.const 1))">>,
    {ok, I, _, _} = hb_beamr:start(Wat),
    Spinner = spawn(fun() -> hb_beamr:call(I, "spin", []) end),
    running = hb_beamr_test_util:settle(fun() -> {ok, #{state := S}} = hb_beamr:info(I), S end, running),
    ?assertMatch({error, {trap, timeout, _}, #{}},
                 hb_beamr:call(I, "quick", [], fun hb_beamr:stub/3, #{}, #{timeout => 50})),
    exit(Spinner, kill),
    hb_beamr:stop(I).

%% Emscripten's invoke_* reads a table entry for every call: a million of them in one call
%% must not leave a million function objects in the Store (they were ~100 MB).
invokes_leave_nothing_behind_test_() ->
    {timeout, 60, fun() ->
        Wat = <<"(module (import \"env\" \"invoke_vi\" (func $invoke_vi (param i32 i32)))
                   (table 2 funcref) (elem (i32.const 1) $inc)
                   (global $n (mut i32) (i32.const 0))
                   (func $inc (param i32) (global.set $n (i32.add (global.get $n) (local.get 0))))
                   (func (export \"run\") (param $k i32) (result i32)
                     (loop $l (call $invoke_vi (i32.const 1) (i32.const 1))
                              (br_if $l (local.tee $k (i32.sub (local.get $k) (i32.const 1)))))
                     global.get $n))">>,
        {ok, I, _, _} = hb_beamr:start(Wat),
        {ok, [1000]} = hb_beamr:call(I, "run", [1000]),
        Before = hb_beamr_test_util:resident_mb(),
        ?assertEqual({ok, [1001000]}, hb_beamr:call(I, "run", [1000000])),
        Grown = hb_beamr_test_util:resident_mb() - Before,
        ?assert(Grown < 30),
        %% Calls by table index (the seed's indirect calls) as well.
        [{ok, []} = hb_beamr:call(I, 1, [1]) || _ <- lists:seq(1, 20000)],
        hb_beamr:stop(I)
    end}.

%% A module with an exnref anywhere in a signature still has its exceptions dropped after
%% each call: they can never reach the host as anything but `null'.
exnref_signatures_do_not_keep_exceptions_test_() ->
    {timeout, 60, fun() ->
        Wat = <<"(module (tag $e (param i32))
                   (func (export \"takes\") (param exnref))
                   (func $throw (param i32) (throw $e (local.get 0)))
                   (func (export \"throw_n\") (param $n i32) (result i32)
                     (local $sum i32)
                     (block $done (loop $l
                       (br_if $done (i32.eqz (local.get $n)))
                       (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                       (block $c (result i32)
                         (try_table (catch $e $c) (call $throw (local.get $n)))
                         (i32.const 0))
                       (local.get $sum) (i32.add) (local.set $sum)
                       (br $l)))
                     (local.get $sum)))">>,
        {ok, I, _, _} = hb_beamr:start(Wat),
        {ok, _} = hb_beamr:call(I, "throw_n", [1000]),
        Before = hb_beamr_test_util:resident_mb(),
        [{ok, _} = hb_beamr:call(I, "throw_n", [100000]) || _ <- lists:seq(1, 10)],
        ?assert(hb_beamr_test_util:resident_mb() - Before < 64),
        ?assertEqual({ok, []}, hb_beamr:call(I, "takes", [null])),
        hb_beamr:stop(I)
    end}.

%% stop/1 racing an asynchronous call whose import the NIF handed over at once: the
%% import message still comes before the result, and nothing can answer the call after
%% its result.
async_messages_keep_their_order_when_stopped_test_() ->
    {timeout, 120, fun() ->
        Wat = <<"(module (import \"env\" \"ask\" (func $ask (result i32)))
                   (func (export \"f\") (result i32) call $ask))">>,
        Outcomes = [race_stop(Wat) || _ <- lists:seq(1, 10000)],
        ?assertEqual([], [O || O <- Outcomes, O =/= ok])
    end}.

race_stop(Wat) ->
    {ok, I, _, _} = hb_beamr:start(Wat),
    Stopper = spawn(fun() -> hb_beamr:stop(I) end),
    case hb_beamr:call_async(I, "f", [], #{}) of
        {ok, Ref} ->
            Messages = collect(Ref, []),
            Replied = [hb_beamr:reply(Ref, [1]) || lists:member(import, Messages)],
            exit(Stopper, kill),
            check_order(Messages, Replied);
        {error, stopped} ->
            ok
    end.

collect(Ref, Seen) ->
    receive
        {hb_beamr_import, Ref, _} -> collect(Ref, [import | Seen]);
        {hb_beamr_result, Ref, _} ->
            %% A late import would have been posted by call_async/4 itself, before this.
            receive {hb_beamr_import, Ref, _} -> lists:reverse([late_import, result | Seen])
            after 0 -> lists:reverse([result | Seen])
            end
    after 5000 -> lists:reverse([no_result | Seen])
    end.

check_order([result], []) -> ok;
check_order([import, result], [{error, badarg}]) -> ok;
check_order(Messages, Replied) -> {Messages, Replied}.

%% Every nested call runs on a wasm stack of its own: a hundred instances nesting
%% `invoke_*' to the depth bound at once must not take the mappings the VM needs (they
%% exhausted vm.max_map_count, then every call panicked and the VM aborted).
nesting_everywhere_at_once_test_() ->
    {timeout, 120, fun() ->
        Wat = <<"(module (import \"env\" \"invoke_vi\" (func $invoke_vi (param i32 i32)))
                   (table 1 funcref) (elem (i32.const 0) $again)
                   (func $again (param $n i32)
                     (if (local.get $n) (then (call $invoke_vi (i32.const 0) (i32.sub (local.get $n) (i32.const 1))))))
                   (func (export \"recurse_invoke\") (param $n i32) (call $invoke_vi (i32.const 0) (local.get $n))))">>,
        Self = self(),
        Pids = [spawn(fun() ->
                    {ok, I, _, _} = hb_beamr:start(Wat),
                    Self ! {self(), hb_beamr:call(I, "recurse_invoke", [100000])},
                    hb_beamr:stop(I)
                end) || _ <- lists:seq(1, 100)],
        Results = [receive {Pid, R} -> R after 60000 -> no_answer end || Pid <- Pids],
        ?assertEqual([], [R || R <- Results, not is_stack_overflow(R)])
    end}.

is_stack_overflow({error, {trap, stack_overflow, _}}) -> true;
is_stack_overflow(_) -> false.

%% read_string reads at most `Max' bytes looking for the NUL (64 MiB by default), so a
%% module cannot make the caller copy its whole memory.
read_string_is_bounded_test() ->
    Wat = <<"(module (memory (export \"m\") 1025)
               (func (export \"fill\") (param i32) (memory.fill (i32.const 0) (i32.const 65) (local.get 0))))">>,
    {ok, I, _, _} = hb_beamr:start(Wat, #{wamr_compat => false}),
    {ok, []} = hb_beamr:call(I, "fill", [100]),
    ?assertEqual({ok, binary:copy(<<"A">>, 100)}, hb_beamr_io:read_string(I, 0)),
    ?assertEqual({error, {string_too_long, 10, 16}}, hb_beamr_io:read_string(I, 10, 16)),
    {ok, []} = hb_beamr:call(I, "fill", [1025 * 65536]),
    ?assertEqual({error, {string_too_long, 0, 64 * 1024 * 1024}}, hb_beamr_io:read_string(I, 0)),
    {ok, Size} = hb_beamr_io:size(I),
    ?assertEqual({error, {out_of_bounds, 100, unterminated, Size}}, hb_beamr_io:read_string(I, 100, Size)),
    ?assertMatch({error, {badarg, _}}, hb_beamr_io:read_string(I, 0, -1)),
    hb_beamr:stop(I).

%% NIFs walk a bounded prefix of what they are given before refusing it.
long_inputs_are_refused_after_a_bounded_walk_test_() ->
    {timeout, 120, fun long_inputs_are_refused_after_a_bounded_walk/0}.

long_inputs_are_refused_after_a_bounded_walk() ->
    Wat = <<"(module (import \"env\" \"ask\" (func $ask (result i32)))
               (table 1 funcref) (elem (i32.const 0) $g)
               (func $g (result i32) i32.const 7)
               (func (export \"f\") (result i32) call $ask))">>,
    {ok, I, _, _} = hb_beamr:start(Wat),
    Long = lists:duplicate(10000000, 1),
    ?assertEqual({error, {badarg, {arity, 0, {more_than, 1000}}}}, hb_beamr:call(I, "f", Long)),
    ?assertMatch({error, {badarg, _}}, hb_beamr:call(I, 0, Long)),
    ?assertMatch({error, {badarg, {arg, 1, _, _}}}, hb_beamr:call(I, 0, [<<0:8000000>>])),
    ?assertEqual({ok, [7]}, hb_beamr:call(I, 0, [])),
    ?assertMatch({error, {not_found, _}}, hb_beamr:call(I, lists:duplicate(10000000, $f), [])),
    ?assertMatch({error, {not_found, _}}, hb_beamr:call(I, binary:copy(<<"f">>, 10000000), [])),
    ?assertMatch({error, {badarg, {snapshot, _}}}, hb_beamr:restore(I, lists:duplicate(1000000, <<>>))),
    {ok, Ref} = hb_beamr:call_async(I, "f", [], #{}),
    receive {hb_beamr_import, Ref, _} -> ok end,
    ?assertEqual({error, {badarg, {arity, 1, {more_than, 1000}}}}, hb_beamr:reply(Ref, Long)),
    receive {hb_beamr_result, Ref, Result} -> ?assertMatch({error, {import_failed, _, _, _}}, Result) end,
    {ok, Ref2} = hb_beamr:call_async(I, "f", [], #{}),
    receive {hb_beamr_import, Ref2, _} -> ok end,
    ok = hb_beamr:reply(Ref2, {error, Long}),
    receive {hb_beamr_result, Ref2, Failed} ->
        ?assertMatch({error, {import_failed, "env", "ask", {too_large, _}}}, Failed)
    end,
    %% Call options are the import fun's too: only `timeout' and `gas' are looked up.
    Opts = maps:from_list([{N, N} || N <- lists:seq(1, 1000000)]),
    ?assertMatch({ok, [7], _}, hb_beamr:call(I, "f", [], fun(S, _, _) -> {ok, [7], S} end, s, Opts#{timeout => 1000})),
    hb_beamr:stop(I).

%% Copies sized by a module or a caller fail with `{resource_limit, memory}' where the
%% allocation cannot be made, never abort the VM: a 4 GiB memory under a 12 GiB
%% address-space limit (room for its reservation, not for copies of it).
copies_that_cannot_be_allocated_test_() ->
    {timeout, 120, fun() ->
        {Peer, Node} = hb_beamr_test_util:address_limited_peer(12 bsl 30),
        {ok, I, _, _} = erpc:call(Node, hb_beamr, start, [<<"(module (memory 65535))">>, #{wamr_compat => false}]),
        ?assertEqual({error, {resource_limit, memory}}, erpc:call(Node, hb_beamr, serialize, [I], 60000)),
        ?assertEqual({error, {resource_limit, memory}}, erpc:call(Node, hb_beamr, snapshot, [I], 60000)),
        ?assertEqual({ok, <<0, 0>>}, erpc:call(Node, hb_beamr_io, read, [I, 0, 2])),
        peer:stop(Peer)
    end}.

%% Under an address-space limit that leaves room for executor stacks but not for many,
%% every instance that starts can be called: the wasm stack it needs is taken at start,
%% so the one that cannot get it is refused there.
started_instances_can_run_at_the_mapping_limit_test_() ->
    {timeout, 120, fun() ->
        {Peer, Node} = hb_beamr_test_util:address_limited_peer(3 bsl 30),
        Wasm = <<"(module (func (export \"add\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))">>,
        {Started, Refused} = erpc:call(Node, hb_beamr_test_util, start_until_refused, [Wasm, 1000], 60000),
        ?assertMatch({error, {resource_limit, _}}, Refused),
        ?assertMatch([_ | _], Started),
        ?assertEqual([{ok, [3]} || _ <- Started], [erpc:call(Node, hb_beamr, call, [I, "add", [1, 2]]) || I <- Started]),
        peer:stop(Peer)
    end}.

%% Copies of more than 8 MiB are split between two threads; when the OS refuses the
%% second thread, the executor does all of it (it used to panic and lose the instance).
serialize_under_a_thread_limit_test_() ->
    {timeout, 120, fun() ->
        {Exec, Args, CodePath} = hb_beamr_test_util:thread_limited_erl(8, [?MODULE]),
        {ok, Peer, _} = peer:start_link(#{exec => {Exec, Args}, connection => standard_io,
                                       args => ["-pa" | CodePath]}),
        ?assertEqual(ok, peer:call(Peer, ?MODULE, serialize_under_thread_limit, [256], 60000)),
        peer:stop(Peer),
        hb_beamr_test_util:remove_copy(CodePath)
    end}.

%% @private Starts an instance of `Pages' pages, takes the OS's last threads with idle
%% instances, then serializes the first: `ok' when it returned all of its memory.
-spec serialize_under_thread_limit(pos_integer()) -> ok | term().
serialize_under_thread_limit(Pages) ->
    Wat = iolist_to_binary(["(module (memory ", integer_to_list(Pages), ") (data (i32.const 0) \"x\"))"]),
    {ok, I, _, _} = hb_beamr:start(Wat),
    Holders = hold_threads(Wat),
    Result = case {hb_beamr:serialize(I), hb_beamr_io:size(I)} of
        {{ok, <<"x", _/binary>> = Bin}, {ok, Size}} when byte_size(Bin) =:= Size -> ok;
        Other -> Other
    end,
    [hb_beamr:stop(H) || H <- [I | Holders]],
    Result.

%% Starts instances until the OS refuses a thread.
hold_threads(Wat) ->
    {Held, {error, {resource_limit, thread}}} = hb_beamr_test_util:start_until_refused(Wat, 1000),
    Held.
