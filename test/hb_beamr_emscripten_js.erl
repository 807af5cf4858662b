%%% @doc Emscripten's JavaScript exception and longjmp runtime written as an import fun,
%%% the way HyperBEAM's Emscripten device answers these imports in Erlang: throws are
%%% `{import_exception, Reason}' answers, which the native `invoke_*' catches. For
%%% instances started with `emscripten => imports' (newer builds: the module keeps its
%%% own reference counts and exports `__cxa_get_exception_ptr').
-module(hb_beamr_emscripten_js).

-export([new/0, import/3]).

%% @doc The runtime's state before a call: nothing thrown, nothing caught.
-spec new() -> map().
new() ->
    #{last => 0, caught => []}.

%% @doc The import fun: the runtime's imports from `env', zeros for every other import.
-spec import(map(), hb_beamr:import_request(), map()) ->
    {ok, [hb_beamr:value()], map()} | {import_exception, term(), map()}.
import(State, #{module := "env", func := Func, args := Args, func_sig := Sig, instance := I}, _Opts) ->
    answer(Func, Args, I, width(Sig), State);
import(State, _Request, _Opts) ->
    {ok, [0], State}.

%% Pointers are 8 bytes when the import takes or returns i64s.
width(Sig) ->
    case lists:member($I, Sig) of
        true -> 8;
        false -> 4
    end.

answer("__cxa_throw", [Thrown, Type, Destructor], I, W, State) ->
    Header = Thrown - 6 * W,
    write_pointer(I, Header + 4 * W, 0, W),
    write_pointer(I, Header + W, Type, W),
    write_pointer(I, Header + 2 * W, Destructor, W),
    {ok, _} = hb_beamr:call(I, "__cxa_increment_exception_refcount", [Thrown]),
    {import_exception, {cxx, Thrown}, State#{last := Thrown}};
answer("__cxa_rethrow", [], I, W, #{caught := [Thrown | _]} = State) when Thrown =/= 0 ->
    ok = hb_beamr_io:write(I, Thrown - 6 * W + 3 * W, <<0, 1>>),
    {ok, _} = hb_beamr:call(I, "__cxa_increment_exception_refcount", [Thrown]),
    {import_exception, {cxx, Thrown}, State#{last := Thrown}};
answer("__cxa_rethrow", [], _I, _W, State) ->
    {import_exception, {cxx, 0}, State#{last := 0}};
answer("__resumeException", [Thrown], _I, _W, #{last := 0} = State) ->
    {import_exception, {cxx, Thrown}, State#{last := Thrown}};
answer("__resumeException", [_Thrown], _I, _W, #{last := Last} = State) ->
    {import_exception, {cxx, Last}, State};
answer("_emscripten_throw_longjmp", [], _I, _W, State) ->
    {import_exception, longjmp, State};
answer("__cxa_find_matching_catch_" ++ _, Types, I, W, #{last := Thrown} = State) ->
    {ok, [find_matching_catch(I, W, Thrown, Types)], State};
answer("__cxa_begin_catch", [0], _I, _W, #{caught := Caught} = State) ->
    {ok, [0], State#{caught := [0 | Caught]}};
answer("__cxa_begin_catch", [Thrown], I, W, #{caught := Caught} = State) ->
    ok = hb_beamr_io:write(I, Thrown - 6 * W + 3 * W, <<1, 0>>),
    {ok, [Object]} = hb_beamr:call(I, "__cxa_get_exception_ptr", [Thrown]),
    {ok, [Object], State#{caught := [Thrown | Caught]}};
answer("__cxa_end_catch", [], I, _W, #{caught := [Thrown | Caught]} = State) ->
    {ok, []} = hb_beamr:call(I, "setThrew", [0, 0]),
    [{ok, []} = hb_beamr:call(I, "__cxa_decrement_exception_refcount", [Thrown]) || Thrown =/= 0],
    {ok, [], State#{last := 0, caught := Caught}};
answer("llvm_eh_typeid_for", [Type], _I, _W, State) ->
    {ok, [Type], State};
answer(_Func, _Args, _I, _W, State) ->
    {ok, [0], State}.

%% The exception being thrown, with the matching clause's type (or the thrown type) in
%% the temporary return register.
find_matching_catch(I, _W, 0, _Types) ->
    tempret(I, 0),
    0;
find_matching_catch(I, W, Thrown, Types) ->
    Header = Thrown - 6 * W,
    write_pointer(I, Header + 4 * W, Thrown, W),
    ThrownType = read_pointer(I, Header + W, W),
    tempret(I, match(I, W, Header, ThrownType, Types)),
    Thrown.

match(_I, _W, _Header, ThrownType, []) ->
    ThrownType;
match(_I, _W, _Header, ThrownType, [Type | _]) when Type =:= 0; Type =:= ThrownType ->
    ThrownType;
match(I, W, Header, ThrownType, [Type | Types]) ->
    case hb_beamr:call(I, "__cxa_can_catch", [Type, ThrownType, Header + 4 * W]) of
        {ok, [0]} -> match(I, W, Header, ThrownType, Types);
        {ok, [_]} -> Type
    end.

%% The register is an i32: a type's address past 2^31 is passed as the negative i32 with
%% the same bits.
tempret(I, Value) ->
    <<Signed:32/signed>> = <<Value:32>>,
    {ok, []} = hb_beamr:call(I, "_emscripten_tempret_set", [Signed]).

read_pointer(I, Address, W) ->
    {ok, <<Value:(W * 8)/little>>} = hb_beamr_io:read(I, Address, W),
    Value.

write_pointer(I, Address, Value, W) ->
    ok = hb_beamr_io:write(I, Address, <<Value:(W * 8)/little>>).
