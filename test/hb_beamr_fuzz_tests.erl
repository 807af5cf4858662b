%%% @doc Malformed modules fed to start/1 in child VMs: random byte strings, truncations
%%% and single-bit flips of the project's own fixture and of HyperBEAM's modules. Every
%%% start must return `{error, _}' or `{ok, ...}' (then a few calls and a stop); a crash of
%%% the child VM, a start stuck in preparation or compilation, or an instance or executor
%%% thread left behind fails the suite. The inputs are deterministic (fixed seeds).
%%%
%%% A mutant whose call (or start function) never ends is legitimate wasm: its calls end
%%% with a call timeout, and a start that overruns is ended by killing the starter (whose
%%% death stops the instance); such inputs are counted as `timed_out', and the child VM
%%% must still be clean at the end.
-module(hb_beamr_fuzz_tests).

-include_lib("eunit/include/eunit.hrl").

%% Run in the child VM.
-export([batch/1, leftovers/0]).

-define(SEED, 20251124).
-define(RANDOM_INPUTS, 2000).
-define(FLIPS, 10000).
%% Sampled truncation offsets per HyperBEAM fixture (besides every section boundary).
-define(TRUNCATIONS, 150).
%% How long one module may take to start and run its calls, and how much longer it may
%% spend compiling (a loaded machine compiles slowly).
-define(BUDGET, 1000).
-define(CALL_TIMEOUT, 200).
-define(COMPILE_LIMIT, 30000).
-define(BATCH_TIMEOUT, 280000).
%% Exports that never return with stub answers even unmutated (fd_write answered 0 makes
%% test-calling's print_args retry forever).
-define(NOT_CALLED, ["print_args"]).

-define(HYPERBEAM, "fixtures/hyperbeam/").

-type spec() :: {random, Seed :: integer(), Count :: pos_integer()}
              | {truncations, binary(), [non_neg_integer()]}
              | {flips, binary(), Seed :: integer(), Count :: pos_integer()}
              | {every_flip, binary()}.
-type tally() :: #{atom() => non_neg_integer() | list()}.
-type outcome() :: rejected | started | timed_out | {failed, term()}.

%% Each list of lanes runs its lanes side by side, each in child VMs of its own.
fuzz_test_() ->
    {inorder,
     [batch_test("random byte strings", fun random_lanes/0),
      batch_test("truncations", fun truncation_lanes/0),
      batch_test("single-bit flips", fun flip_lanes/0)]}.

%% The unmutated fixture does what fuzz.wat says.
own_fixture_test() ->
    {ok, I, [{func, "env", "host", "(i)i"}], _} = hb_beamr:start(fixture()),
    ?assertEqual({ok, [5]}, hb_beamr:call(I, "apply", [0, 2, 3])),
    ?assertEqual({ok, [6]}, hb_beamr:call(I, "apply", [1, 2, 3])),
    ?assertEqual({ok, [6]}, hb_beamr:call(I, "sum", [3])),
    ?assertEqual({ok, [$f]}, hb_beamr:call(I, "io", [8])),
    ?assertEqual({ok, [5]}, hb_beamr:call(I, "catch", [4])),
    ?assertEqual({ok, [47.0]}, hb_beamr:call(I, "mix", [1, 1.5, 2.0])),
    ?assertEqual({ok, [30]}, hb_beamr:call(I, "delegated", [4])),
    ?assertMatch({ok, [_]}, hb_beamr:call(I, "bulk", [0])),
    ?assertEqual({ok, [2, 1]}, hb_beamr:call(I, "pair", [1, 2])),
    ?assertEqual({ok, [6]}, hb_beamr:call(I, "pick", [5, 6, 0])),
    ?assertMatch({ok, [_]}, hb_beamr:call(I, "grow", [])),
    hb_beamr:stop(I).

%% No failure, and every child VM was alive and clean at the end of its inputs.
batch_test(Title, Lanes) ->
    {Title, {timeout, 300, fun() ->
        Started = erlang:monotonic_time(millisecond),
        Tally = run_lanes(Lanes()),
        report(Title, Tally, erlang:monotonic_time(millisecond) - Started),
        ?assertEqual([], maps:get(failures, Tally, []))
    end}}.

run_lanes(Lanes) ->
    Self = self(),
    Pids = [spawn_link(fun() -> Self ! {self(), run_lane(Lane)} end) || Lane <- Lanes],
    lists:foldl(fun(Pid, Tally) -> receive {Pid, Lane} -> merge(Lane, Tally) end end, #{}, Pids).

run_lane(Specs) ->
    lists:foldl(fun(Spec, Tally) -> merge(run_spec(Spec), Tally) end, #{}, Specs).

%% Runs `Spec' in a fresh child VM, which must be clean afterwards.
run_spec(Spec) ->
    Child = start_child(),
    try peer:call(Child, ?MODULE, batch, [Spec], ?BATCH_TIMEOUT) of
        Tally ->
            Clean = peer:call(Child, ?MODULE, leftovers, [], 20000),
            merge(check_clean(Clean), Tally)
    after
        peer:stop(Child)
    end.

check_clean({0, 0}) -> #{};
check_clean(Left) -> #{failed => 1, failures => [{left_behind, Left}]}.

start_child() ->
    Paths = lists:usort([filename:dirname(code:which(M)) || M <- [hb_beamr, ?MODULE]]),
    Env = [{"HB_BEAMR_SHARED", Dir} || Dir <- [os:getenv("HB_BEAMR_SHARED")], Dir =/= false],
    %% OTP 25 also returns the (non-distributed) node name.
    {ok, Child, _Node} = peer:start(#{connection => standard_io, args => ["-pa" | Paths], env => Env}),
    Child.

merge(A, B) ->
    maps:fold(fun(failures, V, Acc) -> maps:update_with(failures, fun(W) -> W ++ V end, V, Acc);
                 (K, V, Acc) -> maps:update_with(K, fun(W) -> W + V end, V, Acc)
              end, B, A).

report(Title, Tally, Millis) ->
    Counts = maps:without([failures], Tally),
    Total = lists:sum(maps:values(Counts)),
    io:format(user, "~n  ~s: ~b inputs in ~b ms: ~p~n", [Title, Total, Millis, Counts]).

%%% The inputs

random_lanes() ->
    [[{random, ?SEED, ?RANDOM_INPUTS}]].

truncation_lanes() ->
    Own = fixture(),
    HyperBEAM = case hyperbeam_fixtures() of
                    skipped -> [];
                    Wasms -> Wasms
                end,
    Specs = [{truncations, Own, lists:seq(0, byte_size(Own) - 1)} |
             [{truncations, Wasm, truncation_offsets(Wasm, Seed)}
              || {Seed, Wasm} <- lists:enumerate(HyperBEAM)]],
    [Specs].

%% Every offset of a small module; for larger ones every section boundary (and one byte
%% either side) and a sample of the rest.
truncation_offsets(Wasm, _Seed) when byte_size(Wasm) =< 1024 ->
    lists:seq(0, byte_size(Wasm) - 1);
truncation_offsets(Wasm, Seed) ->
    Size = byte_size(Wasm),
    Boundaries = lists:append([[S - 1, S, S + 1] || {_, S, _} <- sections(Wasm)]),
    {Sample, _} = lists:mapfoldl(fun(_, R) -> rand:uniform_s(Size, R) end,
                                 rand:seed_s(exsss, {?SEED, Seed, Size}), lists:seq(1, ?TRUNCATIONS)),
    lists:usort([O || O <- Boundaries ++ [X - 1 || X <- Sample], O >= 0, O < Size]).

%% 10,000 flips: every bit of the small modules (test.wasm, test-print.wasm and the own
%% fixture: 6,376 flips), random ones (half of them in the code section) in pow_calculator
%% and test-calling (memory64), whose valid mutants take tens of milliseconds to compile.
%% Two lanes of about equal cost. Without HyperBEAM's modules, the own fixture's flips.
flip_lanes() ->
    flip_lanes(fixture(), hyperbeam_fixtures()).

flip_lanes(Own, skipped) ->
    [[{every_flip, Own}]];
flip_lanes(Own, [Test, Print, Pow, Calling, _Aos]) ->
    Every = [{every_flip, W} || W <- [Test, Print, Own]],
    Calls = {flips, Calling, ?SEED + 1, 1124},
    Pows = {flips, Pow, ?SEED + 2, 2500},
    ?FLIPS = lists:sum([byte_size(W) * 8 || {every_flip, W} <- Every]) + 1124 + 2500,
    [Every ++ [Calls], [Pows]].

fixture() ->
    {ok, Wasm} = file:read_file(filename:join([root(), "test", "fixtures", "fuzz.wasm"])),
    Wasm.

root() ->
    {ok, Dir} = file:get_cwd(),
    Dir.

%% test-64.wasm is byte-identical to test.wasm, so it is left out.
hyperbeam_fixtures() ->
    hb_beamr_test_util:with_shared_files([?HYPERBEAM ++ Name || Name <- ["test.wasm", "test-print.wasm",
                                                                         "pow_calculator.wasm", "test-calling.wasm",
                                                                         "aos-2-pure-xs.wasm"]],
                                         fun(Wasms) -> Wasms end).

%% `{Id, PayloadOffset, PayloadSize}' of each section.
sections(<<"\0asm", _Version:4/binary, Rest/binary>>) ->
    sections(Rest, 8).

sections(<<>>, _Offset) ->
    [];
sections(<<Id, Rest/binary>>, Offset) ->
    {Size, Payload, Length} = uleb128(Rest),
    Start = Offset + 1 + Length,
    <<_:Size/binary, Next/binary>> = Payload,
    [{Id, Start, Size} | sections(Next, Start + Size)].

uleb128(Bin) ->
    uleb128(Bin, 0, 0, 0).

uleb128(<<1:1, Low:7, Rest/binary>>, Shift, Acc, Length) ->
    uleb128(Rest, Shift + 7, Acc bor (Low bsl Shift), Length + 1);
uleb128(<<0:1, Low:7, Rest/binary>>, Shift, Acc, Length) ->
    {Acc bor (Low bsl Shift), Rest, Length + 1}.

%%% In the child VM

%% @private Starts the modules `Spec' describes, exercises those that start and tallies
%% the outcomes.
-spec batch(spec()) -> tally().
batch(Spec) ->
    run_inputs(inputs(Spec), #{}).

%% The inputs as a generator: `{Wasm, Next}' or `done'.
inputs({random, Seed, Count}) ->
    generated(fun random_input/1, rand:seed_s(exsss, Seed), Count);
inputs({truncations, Wasm, Offsets}) ->
    listed([binary:part(Wasm, 0, Offset) || Offset <- Offsets]);
inputs({every_flip, Wasm}) ->
    listed([flip_bit(Wasm, Bit) || Bit <- lists:seq(0, byte_size(Wasm) * 8 - 1)]);
inputs({flips, Wasm, Seed, Count}) ->
    Code = [{Start, Size} || {10, Start, Size} <- sections(Wasm)],
    generated(fun(R) -> flip(Wasm, Code, R) end, rand:seed_s(exsss, Seed), Count).

listed([]) -> done;
listed([Wasm | Rest]) -> {Wasm, fun() -> listed(Rest) end}.

generated(_Generate, _Rand, 0) ->
    done;
generated(Generate, Rand, Count) ->
    {Wasm, Next} = Generate(Rand),
    {Wasm, fun() -> generated(Generate, Next, Count - 1) end}.

run_inputs(done, Tally) ->
    Tally;
run_inputs({Wasm, Next}, Tally) ->
    run_inputs(Next(), tally(try_module(Wasm), Tally)).

%% Random bytes, half of them behind a valid header so that they reach the sections.
random_input(R0) ->
    {Length, R1} = rand:uniform_s(300, R0),
    {Bytes, R2} = random_bytes(Length - 1, R1, []),
    case rand:uniform_s(2, R2) of
        {1, R3} -> {Bytes, R3};
        {2, R3} -> {<<"\0asm", 1, 0, 0, 0, Bytes/binary>>, R3}
    end.

random_bytes(0, R, Acc) ->
    {list_to_binary(Acc), R};
random_bytes(N, R0, Acc) ->
    {Byte, R} = rand:uniform_s(256, R0),
    random_bytes(N - 1, R, [Byte - 1 | Acc]).

%% One bit flipped, in the code section half of the time.
flip(Wasm, Code, R0) ->
    {Where, R1} = rand:uniform_s(2, R0),
    {Offset, R2} = flip_offset(Where, byte_size(Wasm), Code, R1),
    {Bit, R3} = rand:uniform_s(8, R2),
    {flip_bit(Wasm, Offset * 8 + Bit - 1), R3}.

flip_offset(1, _Size, [{Start, CodeSize}], R0) ->
    {X, R} = rand:uniform_s(CodeSize, R0),
    {Start + X - 1, R};
flip_offset(_, Size, _Code, R0) ->
    {X, R} = rand:uniform_s(Size, R0),
    {X - 1, R}.

flip_bit(Wasm, N) ->
    Offset = N div 8,
    <<Before:Offset/binary, Byte, After/binary>> = Wasm,
    <<Before/binary, (Byte bxor (1 bsl (N rem 8))), After/binary>>.

tally({failed, Why}, Tally) ->
    Failures = maps:get(failures, Tally, []),
    maps:update_with(failed, fun(N) -> N + 1 end, 1, Tally#{failures => lists:sublist([Why | Failures], 10)});
tally(Outcome, Tally) ->
    maps:update_with(Outcome, fun(N) -> N + 1 end, 1, Tally).

-spec try_module(binary()) -> outcome().
try_module(Wasm) ->
    {Pid, Monitor} = spawn_monitor(fun() -> exit({outcome, exercise(Wasm)}) end),
    receive
        {'DOWN', Monitor, process, Pid, {outcome, Outcome}} -> Outcome;
        {'DOWN', Monitor, process, Pid, Crash} -> {failed, {crash, Crash, Wasm}}
    after ?BUDGET ->
        overran(erlang:process_info(Pid, current_function), Pid, Monitor, Wasm)
    end.

%% Still running wasm (a start function) is the module's own doing: killing the starter
%% stops the instance. Still preparing or compiling long after is a failure (no module may
%% make that loop).
overran({current_function, {hb_beamr_nif, start, 3}}, Pid, Monitor, Wasm) ->
    receive
        {'DOWN', Monitor, process, Pid, {outcome, Outcome}} -> Outcome;
        {'DOWN', Monitor, process, Pid, Crash} -> {failed, {crash, Crash, Wasm}}
    after ?COMPILE_LIMIT ->
        {failed, {compile_hang, Wasm}}
    end;
overran(_Elsewhere, Pid, Monitor, _Wasm) ->
    exit(Pid, kill),
    receive {'DOWN', Monitor, process, Pid, _} -> timed_out end.

exercise(Wasm) ->
    case hb_beamr:start(Wasm) of
        {error, _Reason} -> rejected;
        {ok, I, _Imports, Exports} -> exercise_instance(I, Exports, Wasm);
        Other -> {failed, {start_returned, Other, Wasm}}
    end.

%% A few calls, a memory access, a stop (of an idle instance).
exercise_instance(I, Exports, Wasm) ->
    Funcs = [{Name, Sig} || {func, Name, Sig} <- Exports, not lists:member(Name, ?NOT_CALLED)],
    Call = fun(Name, Sig) ->
        hb_beamr:call(I, Name, args(Sig), fun hb_beamr:stub/3, #{}, #{timeout => ?CALL_TIMEOUT})
    end,
    Results = [Call(Name, Sig) || {Name, Sig} <- lists:sublist(Funcs, 4)] ++ [hb_beamr_io:size(I)],
    Stopped = hb_beamr:stop(I),
    case [R || R <- Results, not is_result(R)] ++ [R || R <- [Stopped], R =/= ok] of
        [] -> started;
        Bad -> {failed, {bad_results, Bad, Wasm}}
    end.

is_result({ok, _}) -> true;
is_result({error, _}) -> true;
is_result({ok, _, _}) -> true;
is_result({error, _, _}) -> true;
is_result(_) -> false.

%% Zeros for a signature such as "(iIfF)i": most loops of these modules end at once on a
%% zero count or length.
args([$( | Sig]) ->
    [arg(C) || C <- lists:takewhile(fun(C) -> C =/= $) end, Sig)].

arg(C) when C =:= $i; C =:= $I -> 0;
arg(C) when C =:= $f; C =:= $F -> 0.0;
arg($v) -> 0;
arg(_Ref) -> null.

%% @private Owner processes and executor threads left in the child VM (after a pause
%% for the stops to finish).
-spec leftovers() -> {non_neg_integer(), non_neg_integer()}.
leftovers() ->
    timer:sleep(200),
    Owners = [P || P <- erlang:processes(),
                   erlang:process_info(P, initial_call) =:= {initial_call, {hb_beamr_owner, owner, 1}}],
    Tasks = "/proc/" ++ os:getpid() ++ "/task",
    {ok, Ids} = file:list_dir(Tasks),
    Threads = [Id || Id <- Ids,
                     file:read_file(filename:join([Tasks, Id, "comm"])) =:= {ok, <<"hb_beamr_exec\n">>}],
    {length(Owners), length(Threads)}.
