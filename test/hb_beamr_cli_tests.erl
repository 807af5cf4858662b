%%% @doc The `beamr' escript end to end: each test runs `./beamr' (rewritten from the
%%% compiled hb_beamr_cli first, so it is never stale) through a port and checks its
%%% output and exit status, with a cache directory of its own.
-module(hb_beamr_cli_tests).

-include_lib("eunit/include/eunit.hrl").

-define(WAT, "test/fixtures/cli.wat").
-define(AOS, "fixtures/hyperbeam/aos-2-pure-xs.wasm").

cli_test_() ->
    {setup, fun setup/0, fun cleanup/1, fun(Dir) ->
        [{atom_to_list(Name), {timeout, 120, ?_test(Test(Dir))}}
                        || {Name, Test} <- [{help, fun help/1}, {inspect_wat, fun inspect_wat/1},
                                            {inspect_aos, fun inspect_aos/1}, {run_values, fun run_values/1},
                                            {run_imports, fun run_imports/1}, {run_failures, fun run_failures/1},
                                            {run_limits, fun run_limits/1}, {bad_files, fun bad_files/1},
                                            {bad_arguments, fun bad_arguments/1},
                                            {compile_then_run, fun compile_then_run/1}, {aos, fun aos/1},
                                            {wasi_bounds, fun wasi_bounds/1}, {special_files, fun special_files/1},
                                            {not_aos, fun not_aos/1}, {exit_status, fun exit_status/1}]]
    end}.

setup() ->
    ok = hb_beamr_cli:write_escript("beamr"),
    Dir = filename:join(filename:basedir(user_cache, "hb_beamr"), "cli_tests_" ++ os:getpid()),
    ok = filelib:ensure_path(Dir),
    Dir.

cleanup(Dir) ->
    file:del_dir_r(Dir).

help(Dir) ->
    {0, Help} = beamr(Dir, ["--help"]),
    ?assertMatch({_, _}, binary:match(Help, <<"Commands:">>)),
    ?assertMatch({_, _}, binary:match(Help, <<"Exit status: 0 success, 1 runtime error, 2 usage error">>)),
    [begin
         {0, Usage} = beamr(Dir, [Command, "--help"]),
         ?assertMatch(<<"usage: beamr ", _/binary>>, Usage)
     end || Command <- ["inspect", "run", "compile", "aos"]].

inspect_wat(Dir) ->
    {0, Out} = beamr(Dir, ["inspect", ?WAT]),
    assert_lines(Out, ["  func   wasi_snapshot_preview1.fd_write (iiii)i", "  func   env.mystery (i)i",
                       "  memory memory", "  func   divmod (ii)ii", "  func   add64 (II)I",
                       "memory 0: 32-bit, pages: initial 1, maximum 4",
                       "memory 0 as run: 32-bit, pages: initial 2, maximum 5",
                       "  memory64 lowering: no", "  legacy exceptions: no", "  WAMR extra page: yes"]),
    {0, Limited} = beamr(Dir, ["inspect", "--memory-limit", "196608", ?WAT]),
    assert_lines(Limited, ["memory 0 as run: 32-bit, pages: initial 2, maximum 3"]).

inspect_aos(Dir) ->
    with_shared_file(Dir, ?AOS, fun(Aos) ->
        {0, Out} = beamr(Dir, ["inspect", Aos]),
        assert_lines(Out, ["imports (14):", "  func   wasi_snapshot_preview1.fd_write (iIII)i",
                           "  func   handle (II)I", "  table  __indirect_function_table",
                           "memory 0: 64-bit, pages: initial 192, maximum 32768",
                           "memory 0 as run: 32-bit, pages: initial 193, maximum 32769",
                           "  memory64 lowering: yes", "  legacy exceptions: yes", "  WAMR extra page: yes"]),
        ?assertEqual(nomatch, binary:match(Out, <<"Emscripten runtime">>))
    end),
    %% A JavaScript-style Emscripten build: the runtime imports hb_beamr answers.
    with_shared_file(Dir, "fixtures/hyperbeam-aot2/try.wasm", fun(Try) ->
        {0, TryOut} = beamr(Dir, ["inspect", Try]),
        assert_lines(TryOut, ["Emscripten runtime answered natively (exceptions and longjmp unless emscripten => imports):",
                              "  __cxa_rethrow, invoke_v, invoke_iii, __cxa_throw, invoke_viii, __cxa_find_matching_catch_3, "
                              "__cxa_begin_catch, __cxa_end_catch, __cxa_find_matching_catch_2, __resumeException, "
                              "invoke_ii"])
    end).

run_values(Dir) ->
    [?assertEqual({0, Expected}, beamr(Dir, ["run", ?WAT | Args]))
     || {Args, Expected} <- [{["add", "2", "3"], <<"5\n">>},
                             {["add", "4294967295", "-3"], <<"-4\n">>},
                             {["add64", "-5", "0x10"], <<"11\n">>},
                             {["add64", "9223372036854775807", "1"], <<"-9223372036854775808\n">>},
                             {["mul", "1.5", "4"], <<"6.0\n">>},
                             {["mul", "inf", "-2"], <<"-inf\n">>},
                             {["half", "nan"], <<"nan\n">>},
                             {["half", "-3"], <<"-1.5\n">>},
                             {["divmod", "7", "2"], <<"3\n1\n">>},
                             {["grow", "1"], <<"2\n">>}]].

run_imports(Dir) ->
    ?assertEqual({0, <<"0\n">>}, beamr(Dir, ["run", ?WAT, "hello"])),
    {0, Out} = beamr(Dir, ["run", "--wasi", "--trace-imports", ?WAT, "hello"]),
    assert_lines(Out, ["hello from wasm", "beamr: import wasi_snapshot_preview1.fd_write(1, 0, 1, 8) -> [0] (wasi)",
                       "beamr: import env.mystery(7) -> [0] (not provided)", "0"]).

run_failures(Dir) ->
    {1, Trap} = beamr(Dir, ["run", ?WAT, "divmod", "7", "0"]),
    ?assertEqual(<<"beamr: trap (division_by_zero): integer divide by zero\n">>, Trap),
    Started = erlang:monotonic_time(millisecond),
    {1, Timeout} = beamr(Dir, ["run", "--timeout", "300", ?WAT, "spin"]),
    ?assertMatch(<<"beamr: trap (timeout)", _/binary>>, Timeout),
    ?assert(erlang:monotonic_time(millisecond) - Started < 10000).

run_limits(Dir) ->
    {1, OutOfGas} = beamr(Dir, ["run", "--gas", "1000", ?WAT, "count", "1000000"]),
    assert_lines(OutOfGas, ["beamr: gas used: 1000", "beamr: trap (out_of_gas): the call used its gas budget"]),
    {0, Enough} = beamr(Dir, ["run", "--gas", "100000", ?WAT, "count", "1000"]),
    ?assertMatch({match, [_]}, re:run(Enough, "^beamr: gas used: \\d+\n0\n$", [{capture, first}])),
    ?assertEqual({0, <<"-1\n">>}, beamr(Dir, ["run", "--memory-limit", "131072", ?WAT, "grow", "1"])).

bad_files(Dir) ->
    {1, Missing} = beamr(Dir, ["run", "/nonexistent.wasm", "f"]),
    ?assertEqual(<<"beamr: cannot read /nonexistent.wasm: no such file or directory\n">>, Missing),
    Garbage = filename:join(Dir, "garbage.wasm"),
    ok = file:write_file(Garbage, <<0, "asm", 1, 0, 0, 0, 42>>),
    [begin
         {1, Invalid} = beamr(Dir, [Command, Garbage | Rest]),
         ?assertMatch({_, _}, binary:match(Invalid, <<"invalid module">>))
     end || {Command, Rest} <- [{"inspect", []}, {"run", ["f"]}, {"compile", ["-o", Garbage ++ ".out"]}]].

bad_arguments(Dir) ->
    [begin
         {2, Out} = beamr(Dir, Args),
         ?assertMatch({_, _}, binary:match(Out, list_to_binary(Message))),
         ?assertMatch({_, _}, binary:match(Out, <<"usage: beamr">>))
     end || {Args, Message} <- [{[], "no command given"},
                                {["frobnicate"], "unknown command frobnicate"},
                                {["run", ?WAT, "add", "1"], "add takes 2 argument(s) (ii), not 1"},
                                {["run", ?WAT, "add", "x", "2"], "argument x of add is not a valid i32"},
                                {["run", ?WAT, "add", "4294967296", "2"], "not a valid i32"},
                                {["run", ?WAT, "mul", "1.5", "fast"], "argument fast of mul is not a valid f64"},
                                {["run", ?WAT, "nope"], "no exported function nope"},
                                {["run", "--bogus", ?WAT, "add", "1", "2"], "unknown option --bogus"},
                                {["run", "--timeout", "soon", ?WAT, "spin"], "--timeout needs a non-negative integer"},
                                {["run", ?WAT, "spin", "--gas"], "--gas needs a value"},
                                {["inspect"], "bad arguments"},
                                {["compile", ?WAT], "bad arguments"},
                                {["aos", ?WAT], "bad arguments"}]].

compile_then_run(Dir) ->
    Artifact = filename:join(Dir, "cli.artifact"),
    {0, Wrote} = beamr(Dir, ["compile", ?WAT, "-o", Artifact]),
    ?assertMatch(<<"wrote ", _/binary>>, Wrote),
    ?assertEqual({0, <<"42\n">>}, beamr(Dir, ["run", Artifact, "add", "40", "2"])),
    {1, OtherKey} = beamr(Dir, ["run", "--cache-dir", filename:join(Dir, "other"), Artifact, "add", "1", "2"]),
    ?assertMatch({_, _}, binary:match(OtherKey, <<"invalid artifact: bad_mac">>)).

aos(Dir) ->
    with_shared_file(Dir, ?AOS, fun(Aos) ->
        ?assertEqual({0, <<"2\n">>}, beamr(Dir, ["aos", Aos, "1 + 1"])),
        ?assertEqual({0, <<"a\"b\n42\n">>}, beamr(Dir, ["aos", Aos, "return \"a\\\"b\\n\" .. 42"])),
        {1, Error} = beamr(Dir, ["aos", Aos, "error('boom')"]),
        ?assertMatch({_, _}, binary:match(Error, <<"beamr: Lua error: ">>)),
        ?assertMatch({_, _}, binary:match(Error, <<"boom">>))
    end),
    %% The newer AOS builds: Emscripten's JavaScript-style longjmp, constructors to run.
    [with_shared_file(Dir, "fixtures/hyperbeam-aot2/" ++ Name, fun(File) ->
         ?assertEqual({0, <<"2\n">>}, beamr(Dir, ["aos", File, "return 1+1"])),
         {1, NewError} = beamr(Dir, ["aos", File, "error('boom')"]),
         ?assertMatch({_, _}, binary:match(NewError, <<"boom">>))
     end) || Name <- ["aos-ll.wasm", "aos-dock.wasm", "aos-new.wasm"]].

%% fd_write's iovecs are checked against memory before anything is read: a count of 2^31
%% is EINVAL (28) like writev past IOV_MAX, an array or a buffer outside memory EFAULT (21).
wasi_bounds(Dir) ->
    [?assertEqual({Args, {0, Expected}}, {Args, beamr(Dir, ["run", "--wasi", ?WAT, "write" | Args])})
     || {Args, Expected} <- [{["0", "0x7fffffff"], <<"28\n">>}, {["0", "-1"], <<"28\n">>},
                             {["0", "1025"], <<"28\n">>},
                             {["0xfffffff8", "1"], <<"21\n">>}, {["131064", "2"], <<"21\n">>},
                             %% The iovec at 64 is "hello fr": a pointer and a length far outside.
                             {["64", "1"], <<"21\n">>},
                             %% 1,024 empty iovecs at 0 (memory is zero there, up to the text).
                             {["1024", "1024"], <<"0\n">>}]].

%% proc_exit's status is the OS's: its low 8 bits, also for a negative one.
exit_status(Dir) ->
    [?assertEqual({Status, {Expected, <<>>}}, {Status, beamr(Dir, ["run", "--wasi", ?WAT, "exit", Status])})
     || {Status, Expected} <- [{"3", 3}, {"-1", 255}, {"256", 0}]],
    Fifo = filename:join(Dir, "out.fifo"),
    "" = os:cmd("mkfifo '" ++ Fifo ++ "'"),
    ?assertEqual({1, <<"beamr: cannot write ", (list_to_binary(Fifo))/binary, ": not a regular file (other)\n">>},
                 beamr(Dir, ["compile", ?WAT, "-o", Fifo])).

%% FILE must be a regular file: a device or a FIFO is refused at once (reading the first
%% would never end, opening the second would wait for a writer).
special_files(Dir) ->
    Fifo = filename:join(Dir, "fifo.wasm"),
    "" = os:cmd("mkfifo '" ++ Fifo ++ "'"),
    [begin
         {1, Out} = beamr(Dir, [Command, File | Rest]),
         ?assertEqual({File, <<"beamr: cannot read ", (list_to_binary(File))/binary, ": ", Why/binary, "\n">>},
                      {File, Out})
     end || {File, Why} <- [{"/dev/zero", <<"not a regular file (device)">>},
                            {Fifo, <<"not a regular file (other)">>},
                            {Dir, <<"not a regular file (directory)">>}],
            {Command, Rest} <- [{"inspect", []}, {"run", ["f"]}, {"compile", ["-o", Fifo ++ ".out"]},
                                {"aos", ["1"]}]],
    %% A sparse file just over the 1 GiB a module may have is refused by its size.
    Huge = filename:join(Dir, "huge.wasm"),
    {ok, Fd} = file:open(Huge, [write, raw]),
    {ok, _} = file:position(Fd, (1 bsl 30) + 1),
    ok = file:truncate(Fd),
    ok = file:close(Fd),
    ?assertEqual({1, <<"beamr: cannot read ", (list_to_binary(Huge))/binary,
                      ": 1073741825 bytes is over the 1073741824 a module may have\n">>},
                 beamr(Dir, ["run", Huge, "f"])),
    ok = file:delete(Huge).

%% `aos' on modules that are not AO processes: a `beamr: ...' line and status 1.
not_aos(Dir) ->
    {1, Plain} = beamr(Dir, ["aos", ?WAT, "1 + 1"]),
    ?assertEqual(<<"beamr: ", ?WAT, ": not an AO process module: no exported function handle\n">>, Plain),
    Odd = filename:join(Dir, "odd_aos.wat"),
    ok = file:write_file(Odd, <<"(module (memory 1)"
                                "  (func (export \"malloc\") (param i64) (result i64) (i64.const 0))"
                                "  (func (export \"handle\") (param i64 i64) (result i64) (i64.const 0)))">>),
    {1, NoMemory} = beamr(Dir, ["aos", Odd, "1 + 1"]),
    ?assertMatch(<<"beamr: ", _/binary>>, NoMemory),
    ?assertMatch({_, _}, binary:match(NoMemory, <<"malloc_failed">>)),
    {1, Missing} = beamr(Dir, ["aos", "/nonexistent.wasm", "1"]),
    ?assertEqual(<<"beamr: cannot read /nonexistent.wasm: no such file or directory\n">>, Missing).

%% `Fun(File)' on a copy under `Dir' of a file of HyperBEAM's fixtures
%% (`hb_beamr_test_util:with_shared/2': skipped without ../shared).
with_shared_file(Dir, Path, Fun) ->
    hb_beamr_test_util:with_shared(Path, fun(Wasm) ->
        File = filename:join(Dir, filename:basename(Path)),
        ok = file:write_file(File, Wasm),
        Fun(File)
    end).

%% `{ExitStatus, StdoutAndStderr}' of `./beamr Args', with the cache directory under `Dir'.
beamr(Dir, Args) ->
    Port = open_port({spawn_executable, filename:absname("beamr")},
                     [{args, Args}, exit_status, binary, stderr_to_stdout,
                      {env, [{"BEAMR_CACHE_DIR", filename:join(Dir, "cache")}]}]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, Data}} -> collect(Port, [Acc | Data]);
        {Port, {exit_status, Status}} -> {Status, iolist_to_binary(Acc)}
    after 60000 -> error({beamr_hung, iolist_to_binary(Acc)})
    end.

assert_lines(Out, Lines) ->
    Have = string:split(Out, "\n", all),
    [?assertEqual({Line, true}, {Line, lists:member(list_to_binary(Line), Have)}) || Line <- Lines].
