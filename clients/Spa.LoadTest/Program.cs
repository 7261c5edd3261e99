using Spa.CommandLine;
using Spa.LoadTest;

return await CommandRunner.RunAsync(LoadCommand.Create(), args);
