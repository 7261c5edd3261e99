System.Console.WriteLine(Spa.Model.Probe.Run());
