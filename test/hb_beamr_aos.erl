%%% @doc Drives AO's Lua process module (aos-2-pure-xs.wasm) as HyperBEAM's tests do
%%% (see ../shared/fixtures/hyperbeam/AOS.md). Used by the AOS suite and `make bench'.
-module(hb_beamr_aos).

-export([init/1, eval/2, eval/3, write_message/2, handle/3, handle/4, output_data/1, wasi_import/3]).

-define(ENV, <<"{\"Process\":{\"Id\":\"AOS\",\"Owner\":\"FOOBAR\",\"Tags\":["
               "{\"name\":\"Name\",\"value\":\"Thomas\"},"
               "{\"name\":\"Authority\",\"value\":\"FOOBAR\"}]}}">>).

%% @doc Evaluates Lua `Code' in the process; returns the JSON result.
-spec eval(hb_beamr:instance(), binary()) -> binary().
eval(I, Code) ->
    eval(I, Code, #{}).

%% @doc `eval/2' with call options (`timeout', `gas').
-spec eval(hb_beamr:instance(), binary(), map()) -> binary().
eval(I, Code, Opts) ->
    {MsgPtr, EnvPtr} = write_message(I, Code),
    {ok, OutPtr} = handle(I, MsgPtr, EnvPtr, Opts),
    {ok, Json} = hb_beamr_io:read_string(I, OutPtr),
    Json.

%% @doc Runs the module's constructors, which newer Emscripten builds leave to the host
%% (a no-op for modules that do not export them).
-spec init(hb_beamr:instance()) -> ok.
init(I) ->
    case hb_beamr:call(I, "__wasm_call_ctors", [], fun wasi_import/3, [], #{}) of
        {ok, [], _} -> ok;
        {error, {not_found, _}, _} -> ok
    end.

%% @doc Writes an Eval message for `Code' and the environment into the module (its Id is
%% the process's: newer builds take their owner from the process's own message).
-spec write_message(hb_beamr:instance(), binary()) -> {pos_integer(), pos_integer()}.
write_message(I, Code) ->
    Msg = <<"{\"From\":\"FOOBAR\",\"Block-Height\":\"1\",\"Target\":\"AOS\",\"Owner\":\"FOOBAR\","
            "\"Id\":\"AOS\",\"Module\":\"W\",\"Tags\":[{\"name\":\"Action\",\"value\":\"Eval\"}],"
            "\"Data\":\"", Code/binary, "\"}">>,
    {ok, MsgPtr} = hb_beamr_io:write_string(I, Msg),
    {ok, EnvPtr} = hb_beamr_io:write_string(I, ?ENV),
    {MsgPtr, EnvPtr}.

%% @doc Calls `handle'; the result points to a JSON string.
-spec handle(hb_beamr:instance(), pos_integer(), pos_integer()) -> {ok, integer()} | {error, term()}.
handle(I, MsgPtr, EnvPtr) ->
    handle(I, MsgPtr, EnvPtr, #{}).

-spec handle(hb_beamr:instance(), pos_integer(), pos_integer(), map()) -> {ok, integer()} | {error, term()}.
handle(I, MsgPtr, EnvPtr, Opts) ->
    case hb_beamr:call(I, "handle", [MsgPtr, EnvPtr], fun wasi_import/3, [], Opts) of
        {ok, [OutPtr], _Output} -> {ok, OutPtr};
        {error, Reason, _} -> {error, Reason}
    end.

%% @doc `Output.data' of a result (the results here hold no escaped quotes in it).
-spec output_data(binary()) -> binary() | nomatch.
output_data(Json) ->
    case re:run(Json, <<"\"data\":\"([^\"]*)\"">>, [{capture, all_but_first, binary}]) of
        {match, [Data]} -> Data;
        nomatch -> nomatch
    end.

%% @doc The minimal WASI of AOS.md; the state collects what the module writes.
-spec wasi_import(list(), hb_beamr:import_request(), map()) -> {ok, [integer()], list()}.
wasi_import(Out, #{func := "fd_write", args := [_Fd, Iovs, Count, RetPtr], instance := I}, _) ->
    case hb_beamr_cli:wasi_iovecs(I, Iovs, Count, 8) of
        {ok, Chunks} ->
            ok = hb_beamr_io:write(I, RetPtr, <<(iolist_size(Chunks)):64/little>>),
            {ok, [0], [Chunks | Out]};
        {error, Errno} ->
            {ok, [Errno], Out}
    end;
wasi_import(Out, #{func := "fd_read", args := [_Fd, _Iovs, _Count, RetPtr], instance := I}, _) ->
    ok = hb_beamr_io:write(I, RetPtr, <<0:64>>),
    {ok, [0], Out};
wasi_import(Out, #{func := "clock_time_get"}, _) ->
    {ok, [1], Out};
wasi_import(Out, #{module := "env"} = Request, _) ->
    case hb_beamr_cli:emscripten_import(Request) of
        unknown -> {ok, [0], Out};
        Results -> {ok, Results, Out}
    end;
wasi_import(Out, _Request, _) ->
    {ok, [0], Out}.
