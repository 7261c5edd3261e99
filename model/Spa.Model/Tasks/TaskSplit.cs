namespace Spa.Model.Tasks;

public enum TaskSplit
{
    Train,
    Validation,
    Test,
}
