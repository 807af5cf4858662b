%%% @doc The standing fuzzer (`make fuzz'; a short fixed-seed run and the corpus replay are
%%% in `hb_beamr_short_fuzz_tests'). Modules from `fuzz_modules' (wasm-smith and hostile
%%% shapes, native/beamr_core/examples/fuzz_modules.rs) are started, every export called
%%% with boundary and random arguments under `timeout' and `gas' call options and a
%%% `memory_limit' (64 MiB or 1 GiB), a little memory read, and the instance stopped; all in child VMs under
%%% an address-space and a thread limit, so that the death of a VM is observed, not
%%% suffered. A failure is:
%%%
%%% - `vm_died': the child VM ended (exit status or signal) in the middle of a module;
%%% - `vm_hang': the child printed nothing for `?SILENCE' ms (killed);
%%% - `start_hang', `call_hang', `stop_hang': start, a call or stop not answered within
%%%   its bound (a call's is its `timeout' plus `?MARGIN');
%%% - `panic': a Rust panic (`nif_panicked', a trap or output naming one);
%%% - `bad_result': an answer outside the API's shapes, or a raise;
%%% - `left_behind': owners or executor threads still there 5 s after stop;
%%% - `rss_growth': the child's RSS `?RSS_BOUND' bytes above its level after its first module.
%%%
%%% A failing module is copied into the corpus directory (a `.wasm' and a `.txt' saying
%%% why), once per kind of failure and phase per run, unless the corpus has it already.
%%% After a failure that leaves the child unusable (death, hang, leftovers, RSS) a fresh
%%% child goes on with the next module.
-module(hb_beamr_fuzz_run).

-export([main/0, generate/3, run/2, report/2, child/1]).

-define(MEMORY_LIMITS, [64 bsl 20, 1 bsl 30]).
-define(START_BOUND, 10000).
-define(MARGIN, 2000).
-define(STOP_BOUND, 5000).
-define(SILENCE, 60000).
-define(RSS_BOUND, 512 bsl 20).
-define(ADDRESS_SPACE, 24 bsl 30).
%% Threads beyond the booted child VM's own: one executor per instance, and a few more.
-define(SPARE_THREADS, 64).
%% RLIMIT_NPROC does not bind root: as root the children run as this otherwise unused uid.
-define(CHILD_UID, "64998").
-define(MAX_EXPORTS, 30).
-define(CHUNK, 20).

-type failure() :: #{kind := atom(), file := file:filename(), phase := term(), detail := term(),
                     origin := hostile | wasm_smith}.
-type tally() :: #{modules := non_neg_integer(), started := non_neg_integer(),
                   calls := non_neg_integer(), failures := [failure()], children := non_neg_integer()}.
-type options() :: #{corpus => file:filename() | none, code_paths => [file:filename()]}.
-export_type([tally/0, failure/0]).

%%% The parent

%% @doc `make fuzz': generates and runs modules from seed `FUZZ_SEED' (default 1), either
%% `FUZZ_MODULES' of them (default 500) or as many as fit in `FUZZ_MINUTES'; failing ones
%% go to `FUZZ_CORPUS' (default test/fuzz_corpus). Prints what ran; 0 when nothing failed.
-spec main() -> 0 | 1.
main() ->
    Seed = env_int("FUZZ_SEED", 1),
    Corpus = hb_beamr_test_util:env("FUZZ_CORPUS", "test/fuzz_corpus"),
    Dir = filename:absname("_build/fuzz/modules"),
    Started = erlang:monotonic_time(millisecond),
    Until = case env_int("FUZZ_MINUTES", 0) of
                0 -> {modules, Seed + env_int("FUZZ_MODULES", 500)};
                Minutes -> {time, Started + Minutes * 60000}
            end,
    Tally = chunks(Seed, Until, Dir, #{corpus => Corpus}, empty()),
    report(Tally, erlang:monotonic_time(millisecond) - Started),
    case maps:get(failures, Tally) of
        [] -> 0;
        _ -> 1
    end.

chunks(Seed, {modules, End}, _Dir, _Opts, Tally) when Seed >= End ->
    Tally;
chunks(Seed, {time, End} = Until, Dir, Opts, Tally) ->
    case erlang:monotonic_time(millisecond) >= End of
        true -> Tally;
        false -> chunk(Seed, ?CHUNK, Until, Dir, Opts, Tally)
    end;
chunks(Seed, {modules, End} = Until, Dir, Opts, Tally) ->
    chunk(Seed, min(?CHUNK, End - Seed), Until, Dir, Opts, Tally).

chunk(Seed, Count, Until, Dir, Opts, Tally) ->
    Files = generate(Dir, Seed, Count),
    Ran = in_child_vms(Files, Opts, Tally),
    [file:delete(F) || F <- Files],
    chunks(Seed + Count, Until, Dir, Opts, Ran).

%% @doc Writes the modules of seeds `First'..`First + Count - 1' into `Dir' with the
%% generator (`FUZZ_GEN', or the example cargo builds under `CARGO_TARGET_DIR'); their paths.
-spec generate(file:filename(), non_neg_integer(), pos_integer()) -> [file:filename()].
generate(Dir, First, Count) ->
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Gen = generator(),
    Port = open_port({spawn_executable, Gen},
                     [{args, [Dir, integer_to_list(First), integer_to_list(Count)]}, exit_status, stderr_to_stdout]),
    0 = wait_exit(Port),
    [filename:join(Dir, integer_to_list(S) ++ ".wasm") || S <- lists:seq(First, First + Count - 1)].

generator() ->
    Home = hb_beamr_test_util:env("HOME", "/root"),
    Target = hb_beamr_test_util:env("CARGO_TARGET_DIR", filename:join(Home, ".cache/hb_beamr/target")),
    Gen = hb_beamr_test_util:env("FUZZ_GEN", filename:join(Target, "release/examples/fuzz_modules")),
    filelib:is_regular(Gen) orelse error({no_generator, Gen, "cargo build --release -p beamr_core --example fuzz_modules"}),
    Gen.

wait_exit(Port) ->
    receive
        {Port, {exit_status, Status}} -> Status;
        {Port, {data, _}} -> wait_exit(Port)
    end.

%% @doc Runs `Files' (in order) in child VMs; `corpus' is where failing modules are copied
%% (`none': nowhere).
-spec run([file:filename()], options()) -> tally().
run(Files, Opts) ->
    in_child_vms(Files, Opts, empty()).

%% Runs `Files' from a place the children can read: as root they run as another user,
%% who may not read the checkout (a fresh `mktemp -d' is 0700), so the code and the
%% modules are copied where all may read them, for the time of the run.
in_child_vms(Files, Opts, Tally) ->
    case string:trim(os:cmd("id -u")) of
        "0" ->
            Ebin = hb_beamr_test_util:copy_for_nobody([?MODULE]),
            Dir = filename:join(filename:dirname(filename:dirname(Ebin)), "modules"),
            ok = filelib:ensure_path(Dir),
            ok = file:change_mode(Dir, 8#755),
            Copies = [begin
                          Copy = filename:join(Dir, filename:basename(F)),
                          {ok, _} = file:copy(F, Copy),
                          ok = file:change_mode(Copy, 8#644),
                          Copy
                      end || F <- Files],
            try run_from(list_to_tuple(Copies), 1, Opts#{code_paths => [Ebin]}, Tally)
            after hb_beamr_test_util:remove_copy([Ebin])
            end;
        _ ->
            Paths = lists:usort([filename:dirname(code:which(M)) || M <- [hb_beamr, ?MODULE]]),
            run_from(list_to_tuple(Files), 1, Opts#{code_paths => Paths}, Tally)
    end.

run_from(Files, Index, _Opts, Tally) when Index > tuple_size(Files) ->
    Tally;
run_from(Files, Index, Opts, Tally) ->
    {Next, Ran} = child_run(Files, Index, Opts, Tally#{children := maps:get(children, Tally) + 1}),
    run_from(Files, Next, Opts, Ran).

empty() ->
    #{modules => 0, started => 0, calls => 0, failures => [], children => 0}.

%% One child VM from module `Index' until it ends or must be replaced: `{NextIndex, Tally}'
%% (`Tally' goes on from the run's).
child_run(Files, Index, Opts, Tally) ->
    Job = filename:join("/tmp", "hb_beamr_fuzz_job_" ++ os:getpid() ++ "_" ++ integer_to_list(Index)),
    ok = file:write_file(Job, io_lib:format("~p.~n", [#{files => tuple_to_list(Files), first => Index}])),
    ok = file:change_mode(Job, 8#644),
    Port = open_child(Job, maps:get(code_paths, Opts)),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    State = #{port => Port, os_pid => OsPid, files => Files, current => Index, phase => booting,
              baseline => undefined, opts => Opts, out => [], tally => Tally},
    try
        watch(State)
    after
        file:delete(Job)
    end.

open_child(Job, Paths) ->
    Erl = os:find_executable("erl"),
    Eval = "hb_beamr_fuzz_run:child(\"" ++ Job ++ "\")",
    VmThreads = length(element(2, file:list_dir("/proc/self/task"))),
    Limits = [os:find_executable("prlimit"), "--as=" ++ integer_to_list(?ADDRESS_SPACE),
              "--nproc=" ++ integer_to_list(VmThreads + ?SPARE_THREADS)],
    Vm = ["env", "HOME=/tmp", Erl, "-noshell", "-pa" | Paths] ++ ["-eval", Eval],
    Command = case string:trim(os:cmd("id -u")) of
                  "0" -> ["setpriv", "--reuid=" ++ ?CHILD_UID, "--regid=" ++ ?CHILD_UID, "--clear-groups" | Limits ++ Vm];
                  _ -> Limits ++ Vm
              end,
    [Exec | Args] = Command,
    open_port({spawn_executable, os:find_executable(Exec)},
              [{args, Args}, {line, 1 bsl 16}, exit_status, stderr_to_stdout, binary]).

%% Reads the child's lines: `FUZZ <base64 term>' for progress, anything else is output
%% (which is kept for the failure's detail, and is a panic when it names one).
watch(#{port := Port} = S) ->
    receive
        {Port, {data, {eol, <<"FUZZ ", Term/binary>>}}} ->
            event(binary_to_term(base64:decode(Term)), S);
        {Port, {data, {_, Line}}} ->
            watch(output(Line, S));
        {Port, {exit_status, Status}} ->
            died(Status, S)
    after ?SILENCE ->
        os:cmd("kill -9 " ++ integer_to_list(maps:get(os_pid, S))),
        Failed = fail(vm_hang, #{silent_ms => ?SILENCE}, S),
        {maps:get(current, S) + 1, drain(Port, Failed)}
    end.

%% The first lines: a panic or an allocation failure names itself there, a backtrace follows.
output(Line, #{out := Out} = S) when length(Out) < 20 ->
    S#{out := [Line | Out]};
output(_Line, S) ->
    S.

event({phase, Index, Phase}, S) ->
    watch(S#{current := Index, phase := Phase, out := []});
event({done, Index, Result}, #{tally := T} = S) ->
    #{started := Started, calls := Calls, problems := Problems, rss := Rss, clean := Clean} = Result,
    T1 = T#{modules := maps:get(modules, T) + 1, started := maps:get(started, T) + Started,
            calls := maps:get(calls, T) + Calls},
    S1 = lists:foldl(fun({Kind, Phase, Detail}, Acc) -> fail(Kind, Detail, Acc#{phase := Phase}) end,
                     S#{tally := T1}, panics(S) ++ Problems),
    Baseline = case maps:get(baseline, S) of undefined -> Rss; B -> B end,
    Grown = Rss - Baseline > ?RSS_BOUND,
    S2 = case Grown of
             true -> fail(rss_growth, #{baseline => Baseline, rss => Rss}, S1#{phase := after_stop});
             false -> S1
         end,
    case Clean andalso not Grown of
        true -> watch(S2#{baseline := Baseline, current := Index + 1, out := []});
        false -> replace(Index + 1, S2)
    end;
event(finished, #{port := Port, files := Files, tally := T}) ->
    wait_exit(Port),
    {tuple_size(Files) + 1, T}.

%% Output naming a panic, as a failure of the module that was running.
panics(#{out := Out}) ->
    [{panic, output, Line} || Line <- lists:reverse(Out), binary:match(Line, <<"panicked">>) =/= nomatch].

replace(Next, #{port := Port, os_pid := OsPid} = S) ->
    os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    {Next, drain(Port, S)}.

drain(Port, #{tally := T}) ->
    wait_exit(Port),
    T.

%% The child ended before saying `finished': the module it was on killed it.
died(Status, #{current := Index} = S) ->
    Detail = #{status => Status, signal => signal(Status), output => lists:reverse(maps:get(out, S))},
    {Index + 1, maps:get(tally, fail(vm_died, Detail, S))}.

%% erl_child_setup reports a death by signal N as 128 + N.
signal(Status) when Status > 128 -> Status - 128;
signal(_) -> none.

fail(Kind, Detail, #{current := Index, files := Files, phase := Phase, tally := T, opts := Opts} = S) ->
    File = element(min(Index, tuple_size(Files)), Files),
    Failure = #{kind => Kind, file => File, phase => Phase, detail => Detail, origin => origin(File)},
    io:format("  FAIL ~s ~p in ~ts: ~ts~n", [File, Kind, one_line(Phase), one_line(Detail)]),
    save(Failure, maps:get(corpus, Opts, none), T),
    S#{tally := T#{failures := maps:get(failures, T) ++ [Failure]}}.

one_line(Term) ->
    Text = io_lib:format("~tP", [Term, 12]),
    string:slice(re:replace(Text, "\\s*\n\\s*", " ", [global, unicode, {return, list}]), 0, 400).

%% Copies the module into the corpus (named by its hash, a note beside it: one term per
%% failure) once per kind of failure, phase (the export, for the hostile ones) and origin
%% (hostile or wasm-smith) per run, unless the corpus held the same bytes before this run.
save(_Failure, none, _T) ->
    ok;
save(#{kind := Kind, file := File, phase := Phase} = Failure, Corpus, #{failures := Earlier}) ->
    {ok, Wasm} = file:read_file(File),
    Key = {Kind, phase_kind(Phase), maps:get(origin, Failure)},
    Same = [F || #{kind := K, phase := P, origin := O} = F <- Earlier, {K, phase_kind(P), O} =:= Key],
    Hash = binary:part(binary:encode_hex(crypto:hash(sha256, Wasm)), 0, 12),
    Name = filename:join(Corpus, string:lowercase(binary_to_list(Hash))),
    Known = filelib:is_regular(Name ++ ".wasm"),
    Saved = [F || #{file := F0} = F <- Earlier, F0 =:= File],
    case Same =:= [] andalso (not Known orelse Saved =/= []) of
        true ->
            ok = filelib:ensure_dir(Name),
            ok = file:write_file(Name ++ ".wasm", Wasm),
            Note = io_lib:format("~p.~n", [Failure#{file => filename:basename(File)}]),
            ok = file:write_file(Name ++ ".txt", Note, [append]);
        false ->
            ok
    end.

%% The generator's hostile modules export `hostile_*' functions; the others are wasm-smith's.
origin(File) ->
    {ok, Wasm} = file:read_file(File),
    case binary:match(Wasm, <<"hostile_">>) of
        nomatch -> wasm_smith;
        _ -> hostile
    end.

phase_kind({call, "hostile_" ++ _ = Name, _Args, _Opts}) -> {call, Name};
phase_kind(Phase) when is_tuple(Phase) -> element(1, Phase);
phase_kind(Phase) -> Phase.

%% @doc Prints what ran: modules, calls, minutes, failures by kind.
-spec report(tally(), non_neg_integer()) -> ok.
report(#{modules := Modules, started := Started, calls := Calls, failures := Failures, children := Children}, Millis) ->
    Kinds = lists:foldl(fun(#{kind := K}, Acc) -> maps:update_with(K, fun(N) -> N + 1 end, 1, Acc) end, #{}, Failures),
    io:format("fuzz: ~b modules (~b started), ~b calls, ~b child VMs, ~.1f minutes, ~b failures ~w~n",
              [Modules, Started, Calls, Children, Millis / 60000, length(Failures), Kinds]).

env_int(Name, Default) ->
    list_to_integer(hb_beamr_test_util:env(Name, integer_to_list(Default))).

%%% In the child VM

%% @private Runs the job's modules from `first' on, printing a `FUZZ' line before every
%% step and after every module; halts.
-spec child(file:filename()) -> no_return().
child(Job) ->
    {ok, [#{files := Files, first := First}]} = file:consult(Job),
    ok = hb_beamr:load_driver(),
    Indexed = lists:nthtail(First - 1, lists:enumerate(Files)),
    lists:foreach(fun({Index, File}) -> child_module(Index, File) end, Indexed),
    emit(finished),
    halt(0).

emit(Term) ->
    io:format("FUZZ ~s~n", [base64:encode(term_to_binary(Term))]).

child_module(Index, File) ->
    Phase = fun(P) -> emit({phase, Index, P}) end,
    Phase(read),
    {ok, Wasm} = file:read_file(File),
    %% Arguments and options follow from the module's bytes: a corpus entry replays the
    %% calls that failed when it was found.
    rand:seed(exsss, erlang:phash2(Wasm)),
    {Started, Calls, Problems} = exercise(Wasm, Phase),
    Phase(settle),
    Left = hb_beamr_test_util:settle(fun leftovers/0, {0, 0}),
    Leftovers = [{left_behind, settle, #{left => Left}} || Left =/= {0, 0}],
    emit({done, Index, #{started => Started, calls => Calls, problems => Problems ++ Leftovers,
                         rss => rss(), clean => Left =:= {0, 0}}}).

%% `{Started, Calls, Problems}' for one module.
exercise(Wasm, Phase) ->
    Phase(start),
    Limit = pick(?MEMORY_LIMITS),
    %% A start function may loop: the start's own timeout must end it within the bound.
    Opts = #{memory_limit => Limit, timeout => ?START_BOUND - ?MARGIN},
    case bounded(fun() -> hb_beamr:start(Wasm, Opts) end, ?START_BOUND) of
        {ok, {ok, I, _Imports, Exports}} ->
            Funcs = [{Name, Sig} || {func, Name, Sig} <- Exports],
            {Calls, Problems} = calls(I, lists:sublist(Funcs, ?MAX_EXPORTS), Phase, 0, []),
            Hung = lists:keymember(call_hang, 1, Problems),
            Io = [P || not Hung, P <- memory(I, Phase)],
            Phase(stop),
            Stop = case bounded(fun() -> hb_beamr:stop(I) end, ?STOP_BOUND) of
                       {ok, ok} -> [];
                       timeout -> [{stop_hang, stop, #{}}];
                       {ok, Other} -> [{bad_result, stop, Other}]
                   end,
            {1, Calls, Problems ++ Io ++ Stop};
        {ok, {error, Reason}} ->
            {0, 0, [{panic, start, Reason} || panicked(Reason)]};
        {ok, Other} ->
            {0, 0, [{bad_result, start, Other}]};
        timeout ->
            {0, 0, [{start_hang, start, #{bound_ms => ?START_BOUND}}]}
    end.

%% Every export once, until one is not answered in time: the instance then runs
%% something it cannot be stopped from, and the next calls would only queue behind it.
calls(_I, [], _Phase, Calls, Problems) ->
    {Calls, Problems};
calls(I, [{Name, Sig} | Rest], Phase, Calls, Problems) ->
    Args = args(Sig),
    Opts = call_options(),
    Phase({call, Name, Args, Opts}),
    Bound = maps:get(timeout, Opts) + ?MARGIN,
    Call = fun() -> hb_beamr:call(I, Name, Args, fun import/3, 0, Opts) end,
    Where = {call, Name, Args, Opts},
    case bounded(Call, Bound) of
        timeout -> {Calls + 1, Problems ++ [{call_hang, Where, #{bound_ms => Bound}}]};
        {ok, Result} -> calls(I, Rest, Phase, Calls + 1, Problems ++ check_result(Result, Where))
    end.

check_result({ok, _, _}, _Where) -> [];
check_result({error, Reason, _}, Where) -> [{panic, Where, Reason} || panicked(Reason)];
check_result(Other, Where) -> [{bad_result, Where, Other}].

%% A few memory reads at random places: answers, never crashes.
memory(I, Phase) ->
    Phase(memory),
    Reads = [fun() -> hb_beamr_io:size(I) end,
             fun() -> hb_beamr_io:read(I, rand:uniform(1 bsl 16) - 1, rand:uniform(64)) end,
             fun() -> hb_beamr_io:read_string(I, rand:uniform(1 bsl 16) - 1) end],
    lists:append([memory_result(bounded(Read, ?STOP_BOUND)) || Read <- Reads]).

memory_result({ok, {ok, _}}) -> [];
memory_result({ok, {error, Reason}}) -> [{panic, memory, Reason} || panicked(Reason)];
memory_result({ok, Other}) -> [{bad_result, memory, Other}];
memory_result(timeout) -> [{call_hang, memory, #{bound_ms => ?STOP_BOUND}}].

panicked(Reason) ->
    Text = iolist_to_binary(io_lib:format("~0p", [Reason])),
    binary:match(Text, [<<"panicked">>, <<"nif_panicked">>]) =/= nomatch.

%% `{ok, Fun()}', `{ok, {raised, ...}}' or `timeout' (the process running it then killed).
bounded(Fun, Millis) ->
    {Pid, Ref} = spawn_monitor(fun() -> exit({answer, try Fun() catch C:R -> {raised, C, R} end}) end),
    receive
        {'DOWN', Ref, process, Pid, {answer, Answer}} -> {ok, Answer};
        {'DOWN', Ref, process, Pid, Other} -> {ok, {raised, exit, Other}}
    after Millis ->
        exit(Pid, kill),
        receive {'DOWN', Ref, process, Pid, _} -> timeout end
    end.

%% Zeros of the import's result types: loops that wait for an import's answer spin until
%% their timeout or gas ends them.
import(State, #{func_sig := Sig}, _Opts) ->
    [_, Results] = string:split(Sig, ")"),
    {ok, [zero(C) || C <- Results], State}.

zero(C) when C =:= $i; C =:= $I; C =:= $v -> 0;
zero(C) when C =:= $f; C =:= $F -> 0.0;
zero(_Ref) -> null.

call_options() ->
    Timeout = pick([20, 100, 500]),
    case pick([none, 1000, 10000000]) of
        none -> #{timeout => Timeout};
        Gas -> #{timeout => Timeout, gas => Gas}
    end.

args("(" ++ Sig) ->
    [arg(C) || C <- lists:takewhile(fun(C) -> C =/= $) end, Sig)].

%% Boundary values half of the time, uniform ones otherwise.
arg($i) -> pick([0, 1, -1, 16#7FFFFFFF, -16#80000000, 16#FFFFFFFA, 65536, rand:uniform(1 bsl 32) - (1 bsl 31) - 1]);
arg($I) -> pick([0, 1, -1, 16#7FFFFFFFFFFFFFFF, -16#8000000000000000, 1 bsl 40, rand:uniform(1 bsl 64) - (1 bsl 63) - 1]);
arg(C) when C =:= $f; C =:= $F -> pick([0.0, -1.5, 1.0e30, nan, infinity, neg_infinity, rand:uniform() * 1.0e6]);
arg($v) -> pick([0, -1, rand:uniform(1 bsl 128) - 1]);
arg(_Ref) -> null.

pick(List) ->
    lists:nth(rand:uniform(length(List)), List).

leftovers() ->
    Owners = [P || P <- erlang:processes(),
                   erlang:process_info(P, initial_call) =:= {initial_call, {hb_beamr_owner, owner, 1}}],
    {length(Owners), hb_beamr_test_util:executor_threads()}.

rss() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [_, Rest] = binary:split(Status, <<"VmRSS:">>),
    [Kb | _] = string:lexemes(Rest, " \t\n"),
    binary_to_integer(Kb) * 1024.
