%%% @doc Drives AO's Lua process modules (AOS, e.g. HyperBEAM's aos-2-pure-xs.wasm) as
%%% HyperBEAM does (AOS.md of its fixtures): an Eval message and the process's environment
%%% written into memory as JSON, `handle' called on them, its JSON result read back. Also
%%% answers the imports such modules make: WASI preview 1 as HyperBEAM's dev_wasi does
%%% (output written, stdin empty, no arguments or environment) and the JavaScript helpers
%%% of Emscripten builds. Used by `beamr aos' and `beamr run --wasi' (hb_beamr_cli), the
%%% tests and the benchmarks.
-module(hb_beamr_aos).

-export([init/1, eval/2, eval/3, write_message/2, handle/3, handle/4, output/1]).
-export([import/3, answer/1, zeros/1]).

-define(WASI, "wasi_snapshot_preview1").
%% WASI errno values (wasi_snapshot_preview1's `errno').
-define(EFAULT, 21).
-define(EINVAL, 28).
%% The most iovecs one fd_write takes, POSIX's IOV_MAX on Linux (writev refuses more).
-define(IOV_MAX, 1024).

-type provider() :: wasi | emscripten | not_provided.
%% Who answered an import: the WASI or Emscripten answers here, or nobody (zeros).
-type output() :: [{Fd :: non_neg_integer(), iodata()}].
%% What an import wrote to file descriptors (`fd_write').
-export_type([provider/0, output/0]).

%%% Messages

%% @doc Runs the module's constructors, which newer Emscripten builds leave to the host
%% (nothing to do for modules that do not export them).
-spec init(hb_beamr:instance()) -> ok | {error, hb_beamr:reason()}.
init(I) ->
    case hb_beamr:call(I, "__wasm_call_ctors", [], fun import/3, [], #{}) of
        {ok, [], _Output} -> ok;
        {error, {not_found, _}, _Output} -> ok;
        {error, Reason, _Output} -> {error, Reason}
    end.

%% @doc Evaluates `Lua' in one Eval message; returns the JSON result (see `output/1').
%% Raises when the message cannot be written, `handle' fails or its result cannot be read.
-spec eval(hb_beamr:instance(), unicode:chardata()) -> binary().
eval(I, Lua) ->
    eval(I, Lua, #{}).

%% @doc `eval/2' with call options (`timeout', `gas').
-spec eval(hb_beamr:instance(), unicode:chardata(), map()) -> binary().
eval(I, Lua, Opts) ->
    {ok, MsgPtr, EnvPtr} = write_message(I, Lua),
    {ok, OutPtr} = handle(I, MsgPtr, EnvPtr, Opts),
    {ok, Json} = hb_beamr_io:read_string(I, OutPtr),
    Json.

%% @doc Writes an Eval message for `Lua' and the process's environment into memory
%% (through the module's `malloc'): the pointers `handle' takes.
-spec write_message(hb_beamr:instance(), unicode:chardata()) ->
    {ok, MsgPtr :: pos_integer(), EnvPtr :: pos_integer()} | {error, hb_beamr:reason()}.
write_message(I, Lua) ->
    case hb_beamr_io:write_string(I, message(Lua)) of
        {ok, MsgPtr} ->
            case hb_beamr_io:write_string(I, env()) of
                {ok, EnvPtr} -> {ok, MsgPtr, EnvPtr};
                {error, Reason} -> {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% @doc Calls `handle' on a message written by `write_message/2'; the result points to a
%% JSON string.
-spec handle(hb_beamr:instance(), pos_integer(), pos_integer()) -> {ok, integer()} | {error, hb_beamr:reason()}.
handle(I, MsgPtr, EnvPtr) ->
    handle(I, MsgPtr, EnvPtr, #{}).

%% @doc `handle/3' with call options (`timeout', `gas').
-spec handle(hb_beamr:instance(), pos_integer(), pos_integer(), map()) ->
    {ok, integer()} | {error, hb_beamr:reason()}.
handle(I, MsgPtr, EnvPtr, Opts) ->
    case hb_beamr:call(I, "handle", [MsgPtr, EnvPtr], fun import/3, [], Opts) of
        {ok, [OutPtr], _Output} -> {ok, OutPtr};
        {error, Reason, _Output} -> {error, Reason}
    end.

%% An Eval message, as AOS.md describes. Its Id is the process's: newer AOS builds take
%% their owner from the process's own message.
message(Lua) ->
    iolist_to_binary(["{\"From\":\"FOOBAR\",\"Block-Height\":\"1\",\"Target\":\"AOS\",\"Owner\":\"FOOBAR\","
                      "\"Id\":\"AOS\",\"Module\":\"W\",\"Tags\":[{\"name\":\"Action\",\"value\":\"Eval\"}],"
                      "\"Data\":", json_string(unicode:characters_to_binary(Lua)), "}"]).

env() ->
    <<"{\"Process\":{\"Id\":\"AOS\",\"Owner\":\"FOOBAR\",\"Tags\":["
      "{\"name\":\"Name\",\"value\":\"Thomas\"},{\"name\":\"Authority\",\"value\":\"FOOBAR\"}]}}">>.

json_string(Bin) ->
    [$", [json_char(C) || <<C>> <= Bin], $"].

json_char($") -> "\\\"";
json_char($\\) -> "\\\\";
json_char($\n) -> "\\n";
json_char($\t) -> "\\t";
json_char(C) when C < 16#20 -> io_lib:format("\\u~4.16.0b", [C]);
json_char(C) -> C.

%% @doc What a result says: its `Output.data' (a string unescaped, other JSON as it is;
%% some builds wrap it as `"data":{"output":...}'), else its `Error' (a Lua error).
-spec output(binary()) -> {ok, binary()} | {lua_error, binary()} | {error, no_output | not_utf8}.
output(Json) ->
    case {json_field(Json, "\"Output\":\\{.*?\"data\":"), json_field(Json, "\"Error\":")} of
        {{ok, <<"{", _/binary>>}, _} -> wrapped_output(json_field(Json, "\"Output\":\\{.*?\"data\":\\{.*?\"output\":"));
        {{ok, Data}, _} -> {ok, Data};
        {{error, not_utf8}, _} -> {error, not_utf8};
        {nomatch, {ok, Error}} -> {lua_error, Error};
        {nomatch, _} -> {error, no_output}
    end.

wrapped_output(nomatch) -> {error, no_output};
wrapped_output(Field) -> Field.

%% The JSON value after `Prefix' (a regular expression): a string unescaped, else as it is.
json_field(Json, Prefix) ->
    case re:run(Json, [Prefix, "(\"(?:[^\"\\\\]|\\\\.)*\"|[^,}]*)"], [{capture, all_but_first, binary}, dotall]) of
        {match, [<<$", _/binary>> = Quoted]} -> json_unescape(binary:part(Quoted, 1, byte_size(Quoted) - 2));
        {match, [Value]} -> {ok, Value};
        nomatch -> nomatch
    end.

json_unescape(Bin) ->
    Parts = re:split(Bin, "(\\\\u[0-9a-fA-F]{4}|\\\\.)", [{return, binary}]),
    case unicode:characters_to_binary([unescape(P) || P <- Parts]) of
        Text when is_binary(Text) -> {ok, Text};
        _Invalid -> {error, not_utf8}
    end.

unescape(<<"\\u", Hex/binary>>) -> [binary_to_integer(Hex, 16)];
unescape(<<"\\n">>) -> "\n";
unescape(<<"\\t">>) -> "\t";
unescape(<<"\\r">>) -> "\r";
unescape(<<"\\b">>) -> "\b";
unescape(<<"\\f">>) -> "\f";
unescape(<<"\\", C>>) -> [C];
unescape(Text) -> Text.

%%% Imports

%% @doc An import fun answering as `answer/1' does, whose state collects what the module
%% writes (iodata, in order).
-spec import(iodata(), hb_beamr:import_request(), map()) -> {ok, [hb_beamr:value()], iodata()}.
import(Written, Request, _Opts) ->
    {_Provider, Results, Output} = answer(Request),
    {ok, Results, [Written | [Data || {_Fd, Data} <- Output]]}.

%% @doc Answers an import: WASI preview 1 (`wasi_snapshot_preview1') and the Emscripten
%% helpers (`env') that AO processes call, and zeros (`zeros/1') for the rest. Returns who
%% answered, the results and what the module wrote; the answer's effects on memory are
%% done. `proc_exit' throws `{proc_exit, Status}' (the low 8 bits, the status the OS
%% keeps), which fails the call with `import_failed'.
-spec answer(hb_beamr:import_request()) -> {provider(), [hb_beamr:value()], output()}.
answer(#{module := Module, func_sig := Sig} = Request) ->
    case provided(Module, Request) of
        {Provider, Results, Output} -> {Provider, Results, Output};
        unknown -> {not_provided, zeros(Sig), []}
    end.

provided(?WASI, Request) ->
    wasi(Request);
provided("env", Request) ->
    case emscripten(Request) of
        unknown -> unknown;
        Results -> {emscripten, Results, []}
    end;
provided(_Module, _Request) ->
    unknown.

%% @doc Zero results for an import of signature `Sig' (WAMR's notation, e.g. `"(ii)F"'):
%% 0, 0.0 or `null' by result type.
-spec zeros(string()) -> [hb_beamr:value()].
zeros(Sig) ->
    [_Params, Results] = string:split(Sig, ")"),
    [zero(T) || T <- Results].

zero(Float) when Float =:= $f; Float =:= $F -> 0.0;
zero(Ref) when Ref =:= $r; Ref =:= $e -> null;
zero(_Int) -> 0.

%% The JavaScript helpers of Emscripten builds that AO processes call: a memory copy, and
%% the clock (0: a process's time is its message's Timestamp).
emscripten(#{func := "_emscripten_memcpy_js", args := [To, From, Len], instance := I}) ->
    case hb_beamr_io:read(I, From, Len) of
        {ok, Bytes} -> ok = hb_beamr_io:write(I, To, Bytes), [];
        {error, Reason} -> throw({emscripten_memcpy_js, Reason})
    end;
emscripten(#{func := "emscripten_date_now"}) ->
    [0.0];
emscripten(_Request) ->
    unknown.

%% WASI preview 1 as HyperBEAM's dev_wasi answers it (AOS.md): output written, stdin empty,
%% no arguments or environment, clock_time_get gives errno 1. Pointers and sizes are
%% 64-bit in memory64 modules, which their signatures show (`(iIII)i'). Memory the module
%% points at that is not there gives EFAULT, as the OS would.
wasi(#{func := "fd_write", func_sig := Sig, args := [Fd, Iovs, Count, RetPtr], instance := I}) ->
    Width = pointer_width(Sig),
    case iovecs(I, Iovs, Count, Width) of
        {ok, Data} ->
            {wasi, [errno(hb_beamr_io:write(I, RetPtr, <<(iolist_size(Data)):(Width * 8)/little>>))], [{Fd, Data}]};
        {error, Errno} ->
            {wasi, [Errno], []}
    end;
wasi(#{func := "fd_read", func_sig := Sig, args := [_Fd, _Iovs, _Count, RetPtr], instance := I}) ->
    {wasi, [errno(hb_beamr_io:write(I, RetPtr, <<0:(pointer_width(Sig) * 8)>>))], []};
wasi(#{func := Sizes, func_sig := Sig, args := [CountPtr, SizePtr], instance := I})
        when Sizes =:= "args_sizes_get"; Sizes =:= "environ_sizes_get" ->
    Zero = <<0:(pointer_width(Sig) * 8)>>,
    case errno(hb_beamr_io:write(I, CountPtr, Zero)) of
        0 -> {wasi, [errno(hb_beamr_io:write(I, SizePtr, Zero))], []};
        Errno -> {wasi, [Errno], []}
    end;
wasi(#{func := "clock_time_get"}) ->
    {wasi, [1], []};
wasi(#{func := "proc_exit", args := [Status]}) ->
    %% halt/1 refuses a negative status.
    throw({proc_exit, Status band 16#ff});
wasi(_Request) ->
    unknown.

pointer_width([$(, _Fd, $I | _]) -> 8;
pointer_width([$(, $I | _]) -> 8;
pointer_width(_Sig) -> 4.

errno(ok) -> 0;
errno({error, _}) -> ?EFAULT.

%% The buffers that `Count' WASI iovecs at `Iovs' point at (`Width': 4 or 8 bytes per
%% pointer and length), or a WASI errno: EINVAL for more than 1,024 iovecs (IOV_MAX) or
%% buffers that add up to more than memory holds, EFAULT when the array or a buffer is not
%% inside memory 0. Every bound is checked before anything is copied, so no `Count' makes
%% the host do more than copy memory's size once.
iovecs(I, Iovs, Count, Width) ->
    Unsigned = fun(N) -> N band ((1 bsl (Width * 8)) - 1) end,
    iovecs(I, Unsigned(Iovs), Unsigned(Count), Width, hb_beamr_io:size(I)).

iovecs(_I, _Iovs, Count, _Width, {ok, _MemorySize}) when Count > ?IOV_MAX ->
    {error, ?EINVAL};
iovecs(_I, Iovs, Count, Width, {ok, MemorySize}) when Iovs + Count * 2 * Width > MemorySize ->
    {error, ?EFAULT};
iovecs(I, Iovs, Count, Width, {ok, MemorySize}) ->
    case hb_beamr_io:read(I, Iovs, Count * 2 * Width) of
        {ok, Array} ->
            Bits = Width * 8,
            Buffers = [{Ptr, Len} || <<Ptr:Bits/little, Len:Bits/little>> <= Array],
            read_buffers(I, Buffers, MemorySize);
        {error, _} ->
            {error, ?EFAULT}
    end;
iovecs(_I, _Iovs, _Count, _Width, {error, _}) ->
    {error, ?EFAULT}.

read_buffers(I, Buffers, MemorySize) ->
    case {lists:all(fun({Ptr, Len}) -> Ptr + Len =< MemorySize end, Buffers),
          lists:sum([Len || {_, Len} <- Buffers]) =< MemorySize} of
        {false, _} -> {error, ?EFAULT};
        {true, false} -> {error, ?EINVAL};
        {true, true} -> read_all(I, Buffers, [])
    end.

read_all(_I, [], Data) ->
    {ok, lists:reverse(Data)};
read_all(I, [{Ptr, Len} | Rest], Data) ->
    case hb_beamr_io:read(I, Ptr, Len) of
        {ok, Bin} -> read_all(I, Rest, [Bin | Data]);
        {error, _} -> {error, ?EFAULT}
    end.
