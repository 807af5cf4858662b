%%% @doc Many processes doing random things to a few instances at once, instances
%%% stopped and replaced underneath them, import handlers killed mid-import: every
%%% operation must end with its result or `stopped', nothing may hang or crash.
-module(hb_beamr_stress_tests).

-include_lib("eunit/include/eunit.hrl").

-define(INSTANCES, 4).
-define(WORKERS, 16).
-define(STEPS, 250).

stress_test_() ->
    {timeout, 120, fun stress/0}.

stress() ->
    Wasm = hb_beamr_test_util:fixture("core.wat"),
    Table = ets:new(instances, [public, set]),
    [ets:insert(Table, {K, start(Wasm)}) || K <- lists:seq(1, ?INSTANCES)],
    Self = self(),
    Workers = [spawn_link(fun() -> Self ! {self(), worker(Wasm, Table, Seed)} end)
               || Seed <- lists:seq(1, ?WORKERS)],
    Results = [receive {W, R} -> R after 100000 -> {timeout, W} end || W <- Workers],
    [ok = hb_beamr:stop(I) || {_, I} <- ets:tab2list(Table)],
    ?assertEqual(lists:duplicate(?WORKERS, ok), Results).

start(Wasm) ->
    {ok, I, _, _} = hb_beamr:start(Wasm),
    I.

worker(Wasm, Table, Seed) ->
    rand:seed(exsss, {Seed, Seed * 7, Seed * 13}),
    Bad = [{Step, Op, R} || Step <- lists:seq(1, ?STEPS),
                            {Op, R} <- [step(Wasm, Table)],
                            not acceptable(Op, R)],
    case Bad of
        [] -> ok;
        _ -> {unexpected, lists:sublist(Bad, 5)}
    end.

step(Wasm, Table) ->
    K = rand:uniform(?INSTANCES),
    [{K, I}] = ets:lookup(Table, K),
    X = rand:uniform(1000),
    case rand:uniform(100) of
        N when N =< 30 -> {add, hb_beamr:call(I, "add", [X, 1])};
        N when N =< 50 -> {import, hb_beamr:call(I, "call_host_add", [X, 2], fun adder/3, s)};
        N when N =< 62 -> {io_import, hb_beamr:call(I, "call_host_io", [200], fun io_handler/3, s)};
        N when N =< 75 -> {read, hb_beamr_io:read(I, 16, 5)};
        N when N =< 82 -> {trap, hb_beamr:call(I, "div", [X, 0])};
        N when N =< 88 -> {killed_handler, killed_handler(I)};
        N when N =< 94 -> {loop_stopped, loop_then_stop(I)};
        _ ->
            %% Replace the instance while others may be using it.
            ets:insert(Table, {K, start(Wasm)}),
            {stop, hb_beamr:stop(I)}
    end.

adder(S, #{args := [A, B]}, _) -> {ok, [A + B], S}.

io_handler(S, #{instance := I, args := [Ptr]}, _) ->
    {ok, <<"hello">>} = hb_beamr_io:read(I, 16, 5),
    ok = hb_beamr_io:write(I, Ptr, <<1>>),
    {ok, [D]} = hb_beamr:call(I, "double", [5]),
    {ok, [D], S}.

%% A process that is killed while it handles an import; the instance carries on.
killed_handler(I) ->
    Self = self(),
    Handler = fun(S, _, _) -> Self ! {in_import, self()}, receive never -> {ok, [0], S} end end,
    Pid = spawn(fun() -> hb_beamr:call(I, "wait_import", [], Handler, none) end),
    receive {in_import, Pid} -> exit(Pid, kill)
    after 2000 -> exit(Pid, kill)
    end,
    hb_beamr:call(I, "add", [1, 1]).

%% An instance of its own, stopped while it loops.
loop_then_stop(_) ->
    {ok, J, _, _} = hb_beamr:start(hb_beamr_test_util:fixture("core.wat")),
    Self = self(),
    spawn(fun() -> Self ! {looped, hb_beamr:call(J, "loop_forever", [])} end),
    ok = hb_beamr:stop(J),
    receive {looped, R} -> R after 5000 -> hang end.

acceptable(_, {error, stopped}) -> true;
acceptable(_, {error, stopped, s}) -> true;
acceptable(add, {ok, [_]}) -> true;
acceptable(import, {ok, [_], s}) -> true;
acceptable(io_import, {ok, [11], s}) -> true;
acceptable(read, {ok, <<"hello">>}) -> true;
acceptable(trap, {error, {trap, division_by_zero, _}}) -> true;
acceptable(killed_handler, {ok, [2]}) -> true;
acceptable(stop, ok) -> true;
acceptable(_, _) -> false.
