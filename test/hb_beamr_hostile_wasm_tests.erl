%%% @doc Modules written to outrun the node's bounds: bulk operations that used to cost one
%%% unit of fuel whatever their length, and atomic waits that blocked the executor inside
%%% the runtime where neither a timeout nor stop/1 could reach it.
-module(hb_beamr_hostile_wasm_tests).

-include_lib("eunit/include/eunit.hrl").

-define(FILLS, <<"(module
    (memory 256)
    (func (export \"fill\") (param $n i32) (memory.fill (i32.const 0) (i32.const 7) (local.get $n)))
    (func (export \"fill_times\") (param $n i32) (param $times i32)
        (loop $again
            (memory.fill (i32.const 0) (i32.const 7) (local.get $n))
            (br_if $again (local.tee $times (i32.sub (local.get $times) (i32.const 1))))))
    (func (export \"fill_for_ever\")
        (loop $again
            (memory.fill (i32.const 0) (i32.const 7) (i32.mul (memory.size) (i32.const 65536)))
            (br $again))))">>).

-define(WAITS, <<"(module
    (memory 1 1 shared)
    (func (export \"wait_for_ever\") (result i32)
        (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1)))
    (func (export \"wait_long\") (result i32)
        (memory.atomic.wait64 (i32.const 8) (i64.const 0) (i64.const 1000000000000000000)))
    (func (export \"wait_other_value\") (result i32)
        (memory.atomic.wait32 (i32.const 0) (i32.const 1) (i64.const -1)))
    (func (export \"notify\") (result i32)
        (memory.atomic.notify (i32.const 0) (i32.const 1))))">>).

start(Wat) ->
    {ok, I, _, _} = hb_beamr:start(Wat),
    I.

%% A fill costs its length in gas, charged before it runs: 100 fills of 1 MiB cannot run on a
%% budget of 1,000,000 units (they cost one unit each before).
bulk_operations_are_charged_by_length_test() ->
    I = start(?FILLS),
    Call = fun(Func, Args, Gas) -> hb_beamr:call(I, Func, Args, fun hb_beamr:stub/3, s, #{gas => Gas}) end,
    ?assertMatch({error, {trap, out_of_gas, _}, s}, Call("fill_times", [1 bsl 20, 100], 1000000)),
    ?assertEqual({ok, 1000000}, hb_beamr:gas_used(I)),
    {ok, [], s} = Call("fill", [0], infinity),
    {ok, Empty} = hb_beamr:gas_used(I),
    {ok, [], s} = Call("fill", [12345], infinity),
    ?assertEqual({ok, Empty + 12345}, hb_beamr:gas_used(I)),
    hb_beamr:stop(I).

%% An endless loop of 16 MiB fills reaches the check at every fill, so the deadline ends it
%% (before, after ~2.4 million fills: minutes).
timeout_ends_a_loop_of_fills_test_() ->
    {timeout, 30, fun() ->
        I = start(?FILLS),
        ?assertMatch({error, {trap, timeout, _}, s},
                     hb_beamr:call(I, "fill_for_ever", [], fun hb_beamr:stub/3, s, #{timeout => 50})),
        hb_beamr:stop(I)
    end}.

%% A wait no notify could ever end traps at once; one with a timeout answers "timed-out"
%% (2) without sleeping; a value that differs answers "not-equal" (1) as before.
atomic_waits_never_block_test_() ->
    {timeout, 30, fun() ->
        Threads = hb_beamr_test_util:executor_threads(),
        I = start(?WAITS),
        ?assertMatch({error, {trap, unreachable, _}}, answer(I, "wait_for_ever")),
        ?assertEqual({ok, [2]}, answer(I, "wait_long")),
        ?assertEqual({ok, [1]}, answer(I, "wait_other_value")),
        ?assertEqual({ok, [0]}, answer(I, "notify")),
        ok = hb_beamr:stop(I),
        ?assertEqual(Threads, hb_beamr_test_util:settle(fun hb_beamr_test_util:executor_threads/0, Threads))
    end}.

%% The answer of a call made by another process, or `no_answer' after 5 s (a blocked
%% executor), then the instance stopped.
answer(I, Func) ->
    Self = self(),
    Caller = spawn(fun() -> Self ! {self(), hb_beamr:call(I, Func, [])} end),
    receive
        {Caller, Result} -> Result
    after 5000 ->
        ok = hb_beamr:stop(I),
        no_answer
    end.

-define(GROWS, <<"(module
    (memory 1)
    (memory $second 0)
    (table $funcs 0 funcref)
    (table $externs 0 externref)
    (func (export \"grow_funcs\") (param i32) (result i32) (table.grow $funcs (ref.null func) (local.get 0)))
    (func (export \"grow_externs\") (param i32) (result i32) (table.grow $externs (ref.null extern) (local.get 0)))
    (func (export \"grow_second\") (param i32) (result i32) (memory.grow $second (local.get 0)))
    (func (export \"add\") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))">>).

%% wasmer aborted the VM allocating 32 GiB for 0xFFFFFFFA entries of a table without a
%% maximum; beyond the instance's budget a grow answers -1, the spec's failure.
huge_table_grow_answers_minus_one_test() ->
    I = start(?GROWS),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_funcs", [16#FFFFFFFA])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_externs", [16#FFFFFFFA])),
    ?assertEqual({ok, [0]}, hb_beamr:call(I, "grow_funcs", [1000])),
    ?assertEqual({ok, [3]}, hb_beamr:call(I, "add", [1, 2])),
    hb_beamr:stop(I).

%% memory_limit covers every memory: memory 0 (1 page and WAMR's) takes the whole 128 KiB,
%% so a second memory cannot grow at all, let alone to 1 GiB.
memory_limit_covers_a_second_memory_test() ->
    {ok, I, _, _} = hb_beamr:start(?GROWS, #{memory_limit => 131072}),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_second", [16384])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_second", [1])),
    ?assertEqual({ok, [-1]}, hb_beamr:call(I, "grow_funcs", [1])),
    ?assertEqual({ok, [0]}, hb_beamr:call(I, "grow_second", [0])),
    hb_beamr:stop(I).
