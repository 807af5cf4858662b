%%% @doc `beamr', hb_beamr's command line (README, "CLI"): `inspect', `run', `compile' and
%%% `aos'. `make' writes it as the escript `./beamr' (write_escript/1), which holds this
%%% module and, when it starts, puts `_build/default/lib/hb_beamr/ebin' (relative to the
%%% escript's own location) on the code path, so the NIF is found through
%%% `code:priv_dir(hb_beamr)'. Exit status: 0 on success, 1 for runtime errors (unreadable
%%% or invalid files, traps, timeouts, Lua errors, a WASI `proc_exit' gives its own code),
%%% 2 for usage errors (unknown commands or options, bad or missing arguments).
-module(hb_beamr_cli).

-include_lib("kernel/include/file.hrl").

-export([main/1, write_escript/1]).

-define(EBIN, "_build/default/lib/hb_beamr/ebin").
%% The largest FILE read: a module or artifact beyond it is refused before it is read.
-define(MAX_FILE_BYTES, 1 bsl 30).

%% Options per command: {Flag, Key, Kind}; a flag takes a value unless Kind is `flag'.
-define(MEMORY_LIMIT, {"--memory-limit", memory_limit, integer}).
-define(START_OPTS, [?MEMORY_LIMIT, {"--cache-dir", cache_dir, string}]).
-define(CALL_OPTS, [{"--timeout", timeout, integer}, {"--gas", gas, integer},
                    {"--trace-imports", trace_imports, flag}]).

%% @doc The escript's entry point: runs the command and halts with its exit status.
-spec main([string()]) -> no_return().
main(Args) ->
    Ebin = filename:join(filename:dirname(filename:absname(escript:script_name())), ?EBIN),
    case code:add_patha(Ebin) of
        true -> halt(run_command(Args));
        {error, bad_directory} -> halt(fail_status(io_lib:format("~s is missing: run make", [Ebin])))
    end.

%% @doc Writes the `beamr' escript (this module as its main) at `Path', executable.
-spec write_escript(file:filename()) -> ok.
write_escript(Path) ->
    {?MODULE, Beam, _} = code:get_object_code(?MODULE),
    ok = escript:create(Path, [shebang, {emu_args, "-escript main " ++ atom_to_list(?MODULE)},
                               {archive, [{atom_to_list(?MODULE) ++ ".beam", Beam}], []}]),
    file:change_mode(Path, 8#755).

%% Commands signal failures by throwing `{usage, Command, Message}', `{fail, Message}'
%% or `{exit, Status}'. Anything else that escapes a command is a defect of this module;
%% it is still reported as a runtime error (not as escript's crash, status 127) so that
%% scripts see a `beamr: ...' line and status 1.
run_command(Args) ->
    try command(Args) of
        ok -> 0
    catch
        throw:{usage, Command, Message} ->
            [Synopsis | _] = string:split(usage(Command), "\n"),
            io:format(standard_error, "beamr: ~ts~n~ts (--help for more)~n", [Message, Synopsis]),
            2;
        throw:{fail, Message} -> fail_status(Message);
        throw:{exit, Status} -> Status;
        Class:Reason:Stacktrace ->
            fail_status(io_lib:format("internal error: ~0p~n~0p", [{Class, Reason}, Stacktrace]))
    end.

fail_status(Message) ->
    io:format(standard_error, "beamr: ~ts~n", [Message]),
    1.

%% Leave the command with a usage error (exit status 2) or a runtime error (1).
-spec bad_usage(string()) -> no_return().
bad_usage(Command) -> throw({usage, Command, "bad arguments"}).
-spec fail(io:format(), [term()]) -> no_return().
fail(Format, Args) -> throw({fail, io_lib:format(Format, Args)}).
-spec usage_error(string(), io:format(), [term()]) -> no_return().
usage_error(Command, Format, Args) -> throw({usage, Command, io_lib:format(Format, Args)}).

%%% Commands

command([Help]) when Help =:= "--help"; Help =:= "-h"; Help =:= "help" ->
    io:put_chars(help());
command([Command, Help | _]) when Help =:= "--help"; Help =:= "-h" ->
    io:put_chars(usage(known(Command)));
command(["inspect" | Args]) ->
    inspect(parse(inspect, Args, [?MEMORY_LIMIT]));
command(["run" | Args]) ->
    run(parse(run, Args, [{"--wasi", wasi, flag} | ?CALL_OPTS ++ ?START_OPTS]));
command(["compile" | Args]) ->
    compile(parse(compile, Args, [{"-o", output, string} | ?START_OPTS]));
command(["aos" | Args]) ->
    aos(parse(aos, Args, ?CALL_OPTS ++ ?START_OPTS));
command([]) ->
    usage_error(beamr, "no command given", []);
command([Other | _]) ->
    usage_error(beamr, "unknown command ~ts", [Other]).

known(Command) ->
    case lists:member(Command, ["inspect", "run", "compile", "aos"]) of
        true -> list_to_atom(Command);
        false -> usage_error(beamr, "unknown command ~ts", [Command])
    end.

help() ->
    ["beamr: run WebAssembly with hb_beamr\n\n", usage(beamr),
     "\nCommands:\n"
     "  inspect  imports, exports, memories and the preparation passes a module needs\n"
     "  run      call an export and print its results\n"
     "  compile  write a compiled artifact that run and aos load without compiling\n"
     "  aos      evaluate Lua in an AO process module (aos-2-pure-xs.wasm)\n\n"
     "`beamr COMMAND --help' describes a command. FILE is wasm, WAT or (run, aos) an artifact.\n"
     "Exit status: 0 success, 1 runtime error, 2 usage error.\n"].

usage(beamr) ->
    "usage: beamr inspect|run|compile|aos ...\n";
usage(inspect) ->
    "usage: beamr inspect [--memory-limit BYTES] FILE\n";
usage(run) ->
    "usage: beamr run [OPTIONS] FILE FUNC [ARGS...]\n"
    "  ARGS are parsed by FUNC's signature: integers (decimal or 0x hex), floats, nan, inf, -inf\n"
    "  --wasi             answer WASI imports (fd_write to stdout/stderr, empty stdin, ...)\n"
    ++ call_options_usage();
usage(compile) ->
    "usage: beamr compile [--memory-limit BYTES] [--cache-dir DIR] FILE -o OUT\n";
usage(aos) ->
    "usage: beamr aos [OPTIONS] FILE LUA\n"
    "  evaluates LUA in one Eval message and prints the result's Output data\n"
    ++ call_options_usage().

call_options_usage() ->
    "  --trace-imports    list every import call to stderr\n"
    "  --timeout MS       end the call after MS milliseconds\n"
    "  --gas N            end the call once it has used N units of gas\n"
    "  --memory-limit BYTES  all memories and tables (8 bytes an entry) within BYTES\n"
    "  --cache-dir DIR    compiled modules and the artifact key (default $BEAMR_CACHE_DIR,\n"
    "                     else ~/.cache/hb_beamr/beamr)\n".

inspect({Opts, [File]}) ->
    Bin = read_module(File),
    case hb_beamr_nif:inspect(Bin, Opts) of
        {ok, Info} -> io:put_chars(describe_module(File, byte_size(Bin), Info));
        {error, Reason} -> fail("~ts: ~ts", [File, reason(Reason)])
    end;
inspect(_) ->
    bad_usage(inspect).

run({Opts, [File, Func | Args]}) ->
    {Instance, Exports} = start(File, Opts),
    {Params, _} = export_signature(Exports, Func),
    Values = parse_args(Func, Params, Args),
    Results = call(Instance, Func, Values, Opts),
    lists:foreach(fun(Value) -> io:format("~ts~n", [format_value(Value)]) end, Results);
run(_) ->
    bad_usage(run).

compile({#{output := Out} = Opts, [File]}) ->
    case hb_beamr:compile(read_module(File), start_options(Opts)) of
        {ok, Artifact} -> write_file(Out, Artifact);
        {error, Reason} -> fail("~ts: ~ts", [File, reason(Reason)])
    end;
compile(_) ->
    bad_usage(compile).

aos({Opts, [File, Lua]}) ->
    {Instance, Exports} = start(File, Opts),
    [fail("~ts: not an AO process module: no exported function ~s", [File, Name])
     || Name <- ["handle", "malloc"], not lists:keymember(Name, 2, [E || {func, _, _} = E <- Exports])],
    %% Newer Emscripten builds leave their constructors (which return nothing) to the host.
    _ = [call(Instance, "__wasm_call_ctors", [], Opts#{wasi => true}) || lists:keymember("__wasm_call_ctors", 2, Exports)],
    {MsgPtr, EnvPtr} = aos_message(File, Instance, Lua),
    case call(Instance, "handle", [MsgPtr, EnvPtr], Opts#{wasi => true, wasi_out => standard_error}) of
        [OutPtr] -> io:format("~ts~n", [aos_output(aos_result(File, Instance, OutPtr))]);
        Results -> fail("~ts: handle returned ~b results, not a pointer", [File, length(Results)])
    end;
aos(_) ->
    bad_usage(aos).

aos_result(File, Instance, OutPtr) ->
    case hb_beamr_io:read_string(Instance, OutPtr) of
        {ok, Json} -> Json;
        {error, Reason} -> fail("~ts: cannot read handle's result: ~ts", [File, reason(Reason)])
    end.

aos_message(File, Instance, Lua) ->
    case hb_beamr_aos:write_message(Instance, Lua) of
        {ok, MsgPtr, EnvPtr} -> {MsgPtr, EnvPtr};
        {error, Reason} -> fail("~ts: cannot write the message into memory: ~ts", [File, reason(Reason)])
    end.

%% The result's `Output.data'; a Lua error (the result's `Error') fails.
aos_output(Json) ->
    case hb_beamr_aos:output(Json) of
        {ok, Data} -> Data;
        {lua_error, Error} -> fail("Lua error: ~ts", [string:trim(Error)]);
        {error, no_output} -> fail("no Output data in the result: ~ts", [Json]);
        {error, not_utf8} -> fail("the result is not UTF-8 text: ~0p", [Json])
    end.

%%% Arguments

%% `{Options, Positional}': every `-'-prefixed word but numbers must be an option; `--'
%% ends the options.
parse(Command, Args, Spec) ->
    parse(Command, Args, Spec, #{}, []).

parse(_Command, [], _Spec, Opts, Positional) ->
    {Opts, lists:reverse(Positional)};
parse(_Command, ["--" | Rest], _Spec, Opts, Positional) ->
    {Opts, lists:reverse(Positional, Rest)};
parse(Command, [Word | Rest], Spec, Opts, Positional) ->
    case is_option(Word) of
        true -> parse_option(Command, Word, Rest, Spec, Opts, Positional);
        false -> parse(Command, Rest, Spec, Opts, [Word | Positional])
    end.

is_option([$-, C | _]) when C >= $0, C =< $9; C =:= $. -> false;
is_option("-inf" ++ _) -> false;
is_option("-nan") -> false;
is_option([$-, _ | _]) -> true;
is_option(_) -> false.

parse_option(Command, Flag, Rest, Spec, Opts, Positional) ->
    case lists:keyfind(Flag, 1, Spec) of
        {_, Key, flag} -> parse(Command, Rest, Spec, Opts#{Key => true}, Positional);
        {_, Key, Kind} -> parse_value(Command, Flag, Key, Kind, Rest, Spec, Opts, Positional);
        false -> usage_error(Command, "unknown option ~ts", [Flag])
    end.

parse_value(Command, Flag, _Key, _Kind, [], _Spec, _Opts, _Positional) ->
    usage_error(Command, "~ts needs a value", [Flag]);
parse_value(Command, _Flag, Key, string, [Value | Rest], Spec, Opts, Positional) ->
    parse(Command, Rest, Spec, Opts#{Key => Value}, Positional);
parse_value(Command, Flag, Key, integer, [Value | Rest], Spec, Opts, Positional) ->
    case integer(Value) of
        {ok, N} when N >= 0 -> parse(Command, Rest, Spec, Opts#{Key => N}, Positional);
        _ -> usage_error(Command, "~ts needs a non-negative integer, not ~ts", [Flag, Value])
    end.

integer("0x" ++ Hex) -> to_integer(Hex, 16);
integer("-0x" ++ Hex) -> negate(to_integer(Hex, 16));
integer(Dec) -> to_integer(Dec, 10).

to_integer(Digits, Base) ->
    try {ok, list_to_integer(Digits, Base)}
    catch error:badarg -> error
    end.

negate({ok, N}) -> {ok, -N};
negate(error) -> error.

%% One value per signature character of `Params'.
parse_args(Func, Params, Args) when length(Params) =/= length(Args) ->
    usage_error(run, "~ts takes ~b argument(s) (~ts), not ~b", [Func, length(Params), Params, length(Args)]);
parse_args(Func, Params, Args) ->
    [parse_arg(Func, Type, Arg) || {Type, Arg} <- lists:zip(Params, Args)].

parse_arg(Func, Type, Arg) ->
    case value(Type, Arg) of
        {ok, Value} -> Value;
        error -> usage_error(run, "argument ~ts of ~ts is not a valid ~ts", [Arg, Func, type_name(Type)])
    end.

value($i, Arg) -> in_range(integer(Arg), -1 bsl 31, 1 bsl 32);
value($I, Arg) -> in_range(integer(Arg), -1 bsl 63, 1 bsl 64);
value($v, Arg) -> in_range(integer(Arg), 0, 1 bsl 128);
value(Float, Arg) when Float =:= $f; Float =:= $F -> parse_float(string:lowercase(Arg));
value(Ref, "null") when Ref =:= $r; Ref =:= $e -> {ok, null};
value(_Type, _Arg) -> error.

in_range({ok, N}, Min, Limit) when N >= Min, N < Limit -> {ok, N};
in_range(_, _, _) -> error.

parse_float("nan") -> {ok, nan};
parse_float(Inf) when Inf =:= "inf"; Inf =:= "infinity"; Inf =:= "+inf"; Inf =:= "+infinity" -> {ok, infinity};
parse_float(NegInf) when NegInf =:= "-inf"; NegInf =:= "-infinity" -> {ok, neg_infinity};
parse_float(Arg) ->
    try {ok, list_to_float(Arg)}
    catch error:badarg -> float_from_integer(integer(Arg))
    end.

float_from_integer({ok, N}) -> {ok, float(N)};
float_from_integer(error) -> error.

type_name($i) -> "i32";
type_name($I) -> "i64";
type_name($f) -> "f32";
type_name($F) -> "f64";
type_name($v) -> "v128";
type_name(_) -> "reference (only null)".

%%% Instances and calls

%% FILE's bytes, if it is a regular file (after symlinks) within ?MAX_FILE_BYTES: a FIFO
%% would block the open for ever and a device (/dev/zero) would be read without end.
read_module(File) ->
    case file:read_file_info(File) of
        {ok, #file_info{type = regular, size = Size}} when Size =< ?MAX_FILE_BYTES -> read_regular(File, Size);
        {ok, #file_info{type = regular, size = Size}} ->
            fail("cannot read ~ts: ~b bytes is over the ~b a module may have", [File, Size, ?MAX_FILE_BYTES]);
        {ok, #file_info{type = Type}} -> fail("cannot read ~ts: not a regular file (~s)", [File, Type]);
        {error, Why} -> fail("cannot read ~ts: ~ts", [File, file:format_error(Why)])
    end.

%% Reads the `Size' bytes the file had when it was looked at, and one more to tell that it
%% has grown since (then it is being written: refused rather than read in part).
read_regular(File, Size) ->
    Read = case file:open(File, [read, raw, binary]) of
               {ok, Fd} ->
                   try file:read(Fd, Size + 1) after file:close(Fd) end;
               {error, _} = Failed ->
                   Failed
           end,
    case Read of
        {ok, Bin} when byte_size(Bin) =< Size -> Bin;
        {ok, _} -> fail("cannot read ~ts: it grew while it was read", [File]);
        eof -> <<>>;
        {error, Why} -> fail("cannot read ~ts: ~ts", [File, file:format_error(Why)])
    end.

%% Writes over a regular file or makes a new one: opening a FIFO would wait for a reader.
write_file(File, Bin) ->
    case file:read_file_info(File) of
        {ok, #file_info{type = Type}} when Type =/= regular, Type =/= device ->
            fail("cannot write ~ts: not a regular file (~s)", [File, Type]);
        _ ->
            write_regular(File, Bin)
    end.

write_regular(File, Bin) ->
    case file:write_file(File, Bin) of
        ok -> io:format("wrote ~ts (~b bytes)~n", [File, byte_size(Bin)]);
        {error, Why} -> fail("cannot write ~ts: ~ts", [File, file:format_error(Why)])
    end.

start(File, Opts) ->
    case hb_beamr:start(read_module(File), start_options(Opts)) of
        {ok, Instance, _Imports, Exports} -> {Instance, Exports};
        {error, Reason} -> fail("~ts: ~ts", [File, reason(Reason)])
    end.

start_options(Opts) ->
    Start = maps:with([memory_limit, cache_dir], Opts),
    maps:merge(#{cache_dir => default_cache_dir()}, Start).

default_cache_dir() ->
    case os:getenv("BEAMR_CACHE_DIR") of
        Dir when is_list(Dir), Dir =/= "" -> Dir;
        _ -> filename:basedir(user_cache, "hb_beamr/beamr")
    end.

%% `{Params, Results}' of export `Func' (signature characters).
export_signature(Exports, Func) ->
    case lists:keyfind(Func, 2, [E || {func, _, _} = E <- Exports]) of
        {func, _, Sig} -> split_signature(Sig);
        false -> usage_error(run, "no exported function ~ts (exports: ~ts)",
                             [Func, lists:join(", ", [N || {func, N, _} <- Exports])])
    end.

split_signature("(" ++ Sig) ->
    {Params, ")" ++ Results} = lists:splitwith(fun(C) -> C =/= $) end, Sig),
    {Params, Results}.

call(Instance, Func, Values, Opts) ->
    CallOpts = maps:with([timeout, gas], Opts),
    case hb_beamr:call(Instance, Func, Values, import_fun(Opts), #{}, CallOpts) of
        {ok, Results, _} -> report_gas(Instance, Opts), Results;
        {error, {import_failed, "wasi_snapshot_preview1", "proc_exit", {throw, {proc_exit, Status}}}, _} -> throw({exit, Status});
        {error, Reason, _} -> report_gas(Instance, Opts), fail("~ts", [reason(Reason)])
    end.

report_gas(Instance, #{gas := _}) ->
    {ok, Used} = hb_beamr:gas_used(Instance),
    io:format(standard_error, "beamr: gas used: ~b~n", [Used]);
report_gas(_Instance, _Opts) ->
    ok.

reason({trap, Kind, Message}) -> io_lib:format("trap (~ts): ~ts", [Kind, Message]);
reason({invalid_module, Message}) -> io_lib:format("invalid module: ~ts", [Message]);
reason({invalid_artifact, Why}) -> io_lib:format("invalid artifact: ~0p", [Why]);
reason({cache_dir, Message}) -> io_lib:format("cache directory: ~ts", [Message]);
reason({import_failed, Module, Name, Why}) -> io_lib:format("import ~ts.~ts failed: ~0p", [Module, Name, Why]);
reason(Other) -> io_lib:format("~0p", [Other]).

format_value(nan) -> "nan";
format_value(infinity) -> "inf";
format_value(neg_infinity) -> "-inf";
format_value(null) -> "null";
format_value(F) when is_float(F) -> float_to_list(F, [short]);
format_value(N) when is_integer(N) -> integer_to_list(N).

%%% Imports

%% With `--wasi', WASI's and Emscripten's imports are answered as an AO process's are
%% (hb_beamr_aos); other imports (all of them without `--wasi') get zeros.
%% `--trace-imports' lists every import call to stderr.
import_fun(Opts) ->
    fun(State, #{module := Module, func := Name, args := Args, func_sig := Sig} = Request, _CallOpts) ->
        {Provider, Results, Output} = answer(Request, Sig, Opts),
        [output(Fd, Data, Opts) || {Fd, Data} <- Output],
        trace(Opts, Module, Name, Args, Results, Provider),
        {ok, Results, State}
    end.

answer(Request, _Sig, #{wasi := true}) -> hb_beamr_aos:answer(Request);
answer(_Request, Sig, _Opts) -> {not_provided, hb_beamr_aos:zeros(Sig), []}.

output(2, Data, _Opts) -> io:put_chars(standard_error, Data);
output(_Fd, Data, #{wasi_out := Device}) -> io:put_chars(Device, Data);
output(_Fd, Data, _Opts) -> io:put_chars(standard_io, Data).

trace(#{trace_imports := true}, Module, Name, Args, Results, Provider) ->
    io:format(standard_error, "beamr: import ~ts.~ts(~ts) -> [~ts] (~ts)~n",
              [Module, Name, lists:join(", ", [format_value(A) || A <- Args]),
               lists:join(", ", [format_value(R) || R <- Results]), provider(Provider)]);
trace(_Opts, _Module, _Name, _Args, _Results, _Provider) ->
    ok.

provider(wasi) -> "wasi";
provider(emscripten) -> "emscripten";
provider(not_provided) -> "not provided".

%%% Inspect

describe_module(File, Size, #{imports := Imports, exports := Exports, memories := Memories,
                              memory0 := Memory0, passes := Passes, emscripten := Emscripten}) ->
    [io_lib:format("~ts: ~b bytes~n", [File, Size]),
     io_lib:format("imports (~b):~n", [length(Imports)]),
     [io_lib:format("  ~-6s ~ts.~ts~ts~n", [Kind, Module, Name, sig_suffix(Sig)]) || {Kind, Module, Name, Sig} <- Imports],
     io_lib:format("exports (~b):~n", [length(Exports)]),
     [io_lib:format("  ~-6s ~ts~ts~n", [Kind, Name, sig_suffix(Sig)]) || {Kind, Name, Sig} <- Exports],
     [io_lib:format("memory ~b: ~ts~n", [N, describe_memory(M)]) || {N, M} <- lists:enumerate(0, Memories)],
     describe_prepared(Memory0),
     "preparation passes:\n",
     [io_lib:format("  ~ts: ~ts~n", [Label, yes_no(maps:get(Key, Passes))])
      || {Key, Label} <- [{memory64_lowering, "memory64 lowering"}, {legacy_exceptions, "legacy exceptions"},
                          {wamr_extra_page, "WAMR extra page"}]],
     describe_emscripten(Emscripten)].

describe_emscripten([]) ->
    "";
describe_emscripten(Names) ->
    io_lib:format("Emscripten runtime answered natively (exceptions and longjmp unless emscripten => imports):~n  ~ts~n",
                  [lists:join(", ", Names)]).

sig_suffix("") -> "";
sig_suffix(Sig) -> [$\s | Sig].

describe_prepared(undefined) -> "";
describe_prepared(Memory) -> io_lib:format("memory 0 as run: ~ts~n", [describe_memory(Memory)]).

describe_memory(#{memory64 := Is64, shared := Shared, imported := Imported, initial := Initial, maximum := Max}) ->
    io_lib:format("~ts, pages: initial ~b, maximum ~ts~ts~ts",
                  [case Is64 of true -> "64-bit"; false -> "32-bit" end, Initial, maximum(Max),
                   case Shared of true -> ", shared"; false -> "" end,
                   case Imported of true -> ", imported"; false -> "" end]).

maximum(infinity) -> "none";
maximum(Pages) -> integer_to_list(Pages).

yes_no(true) -> "yes";
yes_no(false) -> "no".
