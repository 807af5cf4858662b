%%% @doc `make demo': a short tour of hb_beamr.
-module(hb_beamr_demo).
-export([main/0]).

-spec main() -> ok.
main() ->
    {ok, Wat} = file:read_file("demo/greeter.wat"),
    {ok, I, Imports, Exports} = hb_beamr:start(Wat),
    step("started demo/greeter.wat as ~p~n    imports: ~p~n    exports: ~p", [I, Imports, Exports]),

    {ok, NamePtr} = hb_beamr_io:write_string(I, <<"Erlang">>),
    step("wrote the string \"Erlang\" into wasm memory at ~p (via the module's malloc)", [NamePtr]),

    NameLength = fun(Calls, #{module := "env", func := "name_length", args := [Ptr], instance := Inst}, _) ->
                         {ok, Name} = hb_beamr_io:read_string(Inst, Ptr),
                         io:format("    (import env.name_length called; it read ~p from memory)~n", [Name]),
                         {ok, [byte_size(Name)], Calls + 1}
                 end,
    {ok, [Len], Calls} = hb_beamr:call(I, "visit", [NamePtr], NameLength, 0),
    step("visit(~p) called back into Erlang ~p time(s) and returned ~p", [NamePtr, Calls, Len]),

    {ok, [GreetingPtr]} = hb_beamr:call(I, "greeting", []),
    {ok, Greeting} = hb_beamr_io:read_string(I, GreetingPtr),
    step("read the module's greeting from memory: ~p", [<<Greeting/binary, "Erlang!">>]),

    {ok, Snapshot} = hb_beamr:serialize(I),
    {ok, J, _, _} = hb_beamr:start(Wat),
    ok = hb_beamr:deserialize(J, Snapshot),
    {ok, [Visits]} = hb_beamr:call(J, "visits", []),
    {ok, Name} = hb_beamr_io:read_string(J, NamePtr),
    step("serialised ~p bytes of memory, restored them into a second instance ~p:~n"
         "    it has seen ~p visit(s) and still holds the name ~p", [byte_size(Snapshot), J, Visits, Name]),

    {error, Trap} = hb_beamr:call(J, "peek", [16#7FFFFFFF]),
    step("reading through a bad pointer traps cleanly: ~p", [Trap]),
    step("and the instance carries on: visits() = ~p", [hb_beamr:call(J, "visits", [])]),
    ok = hb_beamr:stop(I),
    ok = hb_beamr:stop(J),
    step("stopped both instances; a call now gives ~p", [hb_beamr:call(I, "visits", [])]).

step(Format, Args) ->
    io:format("* " ++ Format ++ "~n", Args).
