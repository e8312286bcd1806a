// Runs `nevertrust sidecar` from source (the command is registered in the main program by the integrator).
import { Command } from 'commander';
import { registerSidecarCommands } from '../../src/cli/commands/sidecar.js';

const program = new Command('nevertrust');
registerSidecarCommands(program);
await program.parseAsync(process.argv);
